//! The request path's use of a pool: a [`Lease`] checks a connection out
//! of a host's pool under the cluster's circuit breakers (opening one when
//! none is idle), sends one request on it, and its [`PooledBody`] gives the
//! connection back when the response has been read. Results feed the
//! cluster's stats and outlier detection.

use std::{
    pin::Pin,
    sync::{Arc, atomic::Ordering},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use strait_codec::{Body, ClientConn, ConnectError, Protocol};
use strait_tls::ApplicationProtocols;

use crate::{
    breaker::{BreakerGuard, RoutingPriority},
    cluster::Cluster,
    host::Host,
    outlier::Outcome,
    pool::{CxGuard, H2Limits, HostCounters, Pool, StreamSlot},
};

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

    /// Envoy's transport failure reason (`%UPSTREAM_TRANSPORT_FAILURE_
    /// REASON%`) for a connection refused or unreachable: the socket error
    /// as the C library words it, after `delayed connect error: ` (Envoy
    /// connects without blocking, so the error arrives later; spaces and
    /// all, as the gRPC access log service's entries carry it: formats and
    /// details print them as `_`). `None` for other failures.
    pub fn transport_failure_reason(&self) -> Option<String> {
        let UpstreamError::Connect(ConnectError::Io(io)) = self else {
            return None;
        };
        io.raw_os_error()?;
        let text = io.to_string();
        // Rust adds " (os error N)" to the C library's message.
        let text = text.split(" (os error").next().unwrap_or(&text);
        Some(format!("delayed connect error: {text}"))
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
    /// The host's pool the connection came from (the default one, or the
    /// one of the request's ALPN override), where it goes back.
    pool: Arc<Pool>,
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
        self.lease_offering(host, priority, downstream_h2, None)
            .await
    }

    /// Like [`Cluster::lease_for`], on a connection that offered
    /// `alpn_override` instead of the TLS context's ALPN (a request's
    /// `envoy.network.application_protocols`, set by Istio's `istio.alpn`):
    /// taken from, and returned to, the host's pool of that list only.
    pub async fn lease_offering(
        self: &Arc<Self>,
        host: Arc<Host>,
        priority: RoutingPriority,
        downstream_h2: bool,
        alpn_override: Option<&ApplicationProtocols>,
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
        let pool = host.pools.get(alpn_override);
        let at = At {
            host: &host,
            pool: &pool,
            alpn: alpn_override,
        };
        let (conn, pooled) = match protocol {
            Protocol::Http1 => self.lease_h1(at, priority, pool_opts.idle_timeout).await?,
            Protocol::Http2 => {
                let limits = H2Limits {
                    max_requests: pool_opts.max_requests_per_connection,
                    max_streams: pool_opts.max_concurrent_streams,
                };
                let (conn, slot) = self.lease_h2(at, limits).await?;
                in_flight._stream = Some(slot);
                (conn, None)
            }
        };
        Ok(Lease {
            conn,
            pooled,
            in_flight,
            host,
            pool,
            cluster: Arc::clone(self),
            started: Instant::now(),
        })
    }

    async fn lease_h1(
        &self,
        at: At<'_>,
        priority: RoutingPriority,
        idle_timeout: Option<Duration>,
    ) -> Result<(ClientConn, Option<(CxGuard, u32)>), UpstreamError> {
        let pool = at.pool;
        if let Some((conn, cx, uses)) = pool.take_idle(idle_timeout) {
            return Ok((conn, Some((cx, uses))));
        }
        if !self.connection_allowed() {
            let _pending = self
                .acquire_pending(priority)
                .ok_or(UpstreamError::Overflow)?;
            let deadline = tokio::time::Instant::now() + self.connect_timeout();
            loop {
                let released = pool.released();
                if let Some((conn, cx, uses)) = pool.take_idle(idle_timeout) {
                    return Ok((conn, Some((cx, uses))));
                }
                if self
                    .breakers
                    .connection_allowed(&self.spec.load().circuit_breakers)
                {
                    break;
                }
                if tokio::time::timeout_at(deadline, released).await.is_err() {
                    self.stats.rq_pending_overflow.increment(1);
                    return Err(UpstreamError::Overflow);
                }
            }
        }
        let (conn, cx) = self.connect(at, Protocol::Http1).await?;
        Ok((conn, Some((cx, 0))))
    }

    async fn lease_h2(
        &self,
        at: At<'_>,
        limits: H2Limits,
    ) -> Result<(ClientConn, StreamSlot), UpstreamError> {
        let pool = at.pool;
        if let Some(c) = pool.take_shared(limits) {
            return Ok(c);
        }
        let failures = pool.h2_failures();
        let _connecting = pool.h2_connect_turn().await;
        if let Some(c) = pool.take_shared(limits) {
            return Ok(c);
        }
        if pool.h2_failures() != failures {
            return Err(UpstreamError::Connect(ConnectError::Io(
                std::io::Error::other("shared HTTP/2 connection attempt failed"),
            )));
        }
        if !self.connection_allowed() {
            return Err(UpstreamError::Overflow);
        }
        match self.connect(at, Protocol::Http2).await {
            Ok((conn, cx)) => {
                let (lease, slot) = pool.add_shared(conn, cx, limits.max_requests);
                Ok((lease.ok_or(UpstreamError::Overflow)?, slot))
            }
            Err(e) => {
                pool.h2_failed();
                Err(e)
            }
        }
    }

    /// Opens a new connection to `at.host` for `at.pool`, counted against
    /// `max_connections`.
    async fn connect(
        &self,
        at: At<'_>,
        protocol: Protocol,
    ) -> Result<(ClientConn, CxGuard), UpstreamError> {
        let At { host, pool, alpn } = at;
        let bytes = Arc::clone(&self.stats.bytes);
        let cx = pool.count_connection(&self.breakers, &host.counters);
        match self.open(host, protocol, bytes, alpn).await {
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
                pool.release_all();
                Err(e.into())
            }
        }
    }
}

impl Lease {
    pub fn host(&self) -> &Arc<Host> {
        &self.host
    }

    /// The local address of the connection the request goes out on.
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.conn.local_addr()
    }

    /// The first URI SAN of the server certificate, on a TLS connection.
    pub fn peer_uri_san(&self) -> Option<&Arc<str>> {
        self.conn.peer_uri_san()
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
            pool,
            ..
        } = self;
        // An upgraded (101) connection belongs to the tunnel now; an HTTP/2
        // connection is shared and never returned.
        let back = match (pooled, &conn) {
            (Some((cx, uses)), c) if c.is_http1() && status != 101 => Some(Returning {
                conn,
                cx,
                uses: uses + 1,
                pool,
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

/// Where a lease's connection comes from: the host, its pool for the
/// request's ALPN override, and that override (for new connections).
#[derive(Clone, Copy)]
struct At<'a> {
    host: &'a Arc<Host>,
    pool: &'a Pool,
    alpn: Option<&'a ApplicationProtocols>,
}

/// An HTTP/1.1 connection on its way back to the pool.
#[derive(Debug)]
struct Returning {
    conn: ClientConn,
    cx: CxGuard,
    uses: u32,
    pool: Arc<Pool>,
    max_uses: Option<u32>,
}

impl Returning {
    fn give_back(self) {
        let Returning {
            conn,
            cx,
            uses,
            pool,
            max_uses,
        } = self;
        if max_uses.is_some_and(|m| uses >= m) {
            // Used up: closing it frees a `max_connections` slot.
            drop((conn, cx));
            pool.release_one();
            return;
        }
        if conn.is_ready() {
            pool.check_in(conn, cx, uses);
        } else {
            // hyper marks the connection ready a moment after the body's
            // last frame; wait for that off the request path.
            tokio::spawn(async move {
                let mut conn = conn;
                if conn.ready().await.is_ok() {
                    pool.check_in(conn, cx, uses);
                } else {
                    drop((conn, cx));
                    pool.release_one();
                }
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
            let pool = Arc::clone(&r.pool);
            drop(r);
            pool.release_one();
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

#[cfg(test)]
#[path = "lease_tests.rs"]
mod tests;
