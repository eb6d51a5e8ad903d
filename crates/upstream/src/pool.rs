//! Per-host connection pools and the lease a request holds while it uses one.

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Instant,
};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use crossbeam_queue::ArrayQueue;
use http::{Request, Response};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use strait_codec::{Body, ClientConn, ConnectError, Protocol};

use crate::cluster::{Cluster, Host};

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
}

impl UpstreamError {
    /// True when the request never reached the upstream application.
    pub fn is_connect_failure(&self) -> bool {
        matches!(self, UpstreamError::Connect(_))
    }
}

/// A host's connections: a lock-free stack of idle HTTP/1.1 connections, or
/// one shared HTTP/2 connection.
#[derive(Debug)]
pub(crate) struct Pool {
    idle: ArrayQueue<ClientConn>,
    h2: ArcSwapOption<ClientConn>,
    /// Held while an HTTP/2 connection is being made, so a burst of requests
    /// on a cold pool opens one connection and multiplexes onto it (as
    /// Envoy's pool does) instead of opening one each. Only the connect path
    /// takes it; a request that finds the shared connection never does.
    h2_connecting: tokio::sync::Mutex<()>,
    /// HTTP/2 connect attempts that failed: requests that waited on a failed
    /// attempt fail with it rather than each retrying in turn.
    h2_failures: AtomicU64,
}

impl Pool {
    pub(crate) fn new() -> Self {
        Pool {
            idle: ArrayQueue::new(MAX_IDLE_PER_HOST),
            h2: ArcSwapOption::empty(),
            h2_connecting: tokio::sync::Mutex::new(()),
            h2_failures: AtomicU64::new(0),
        }
    }

    pub(crate) fn idle_len(&self) -> usize {
        self.idle.len()
    }

    pub(crate) fn clear(&self) {
        while self.idle.pop().is_some() {}
        self.h2.store(None);
    }

    /// An idle, ready connection, if the pool has one. Connections that
    /// closed while idle are dropped here.
    fn take_idle(&self, protocol: Protocol) -> Option<ClientConn> {
        match protocol {
            Protocol::Http1 => {
                while let Some(conn) = self.idle.pop() {
                    if conn.is_ready() {
                        return Some(conn);
                    }
                }
                None
            }
            Protocol::Http2 => {
                let shared = self.h2.load();
                match shared.as_deref() {
                    Some(conn) if !conn.is_closed() => conn.share(),
                    _ => None,
                }
            }
        }
    }
}

/// A connection checked out of a host's pool for one request.
#[derive(Debug)]
pub struct Lease {
    conn: ClientConn,
    host: Arc<Host>,
    cluster: Arc<Cluster>,
    started: Instant,
}

impl Cluster {
    /// Checks out a connection to `host`, opening one if none is idle.
    pub async fn lease(self: &Arc<Self>, host: Arc<Host>) -> Result<Lease, UpstreamError> {
        let protocol = self.protocol();
        let conn = match host.pool.take_idle(protocol) {
            Some(c) => c,
            None if protocol == Protocol::Http2 => {
                let failures = host.pool.h2_failures.load(Ordering::Acquire);
                let _connecting = host.pool.h2_connecting.lock().await;
                if let Some(c) = host.pool.take_idle(protocol) {
                    c
                } else if host.pool.h2_failures.load(Ordering::Acquire) != failures {
                    return Err(UpstreamError::Connect(ConnectError::Io(
                        std::io::Error::other("shared HTTP/2 connection attempt failed"),
                    )));
                } else {
                    match self.connect(&host, protocol).await {
                        Ok(c) => c,
                        Err(e) => {
                            host.pool.h2_failures.fetch_add(1, Ordering::Release);
                            return Err(e);
                        }
                    }
                }
            }
            None => self.connect(&host, protocol).await?,
        };
        Ok(Lease {
            conn,
            host,
            cluster: Arc::clone(self),
            started: Instant::now(),
        })
    }
}

impl Cluster {
    /// Opens a new connection to `host`; an HTTP/2 one becomes the host's
    /// shared connection.
    async fn connect(&self, host: &Host, protocol: Protocol) -> Result<ClientConn, UpstreamError> {
        let bytes = Arc::clone(&self.stats.bytes);
        let conn =
            match ClientConn::connect(host.addr(), protocol, self.connect_timeout(), bytes).await {
                Ok(c) => c,
                Err(e) => {
                    self.stats.cx_connect_fail.increment(1);
                    if matches!(e, ConnectError::Timeout) {
                        self.stats.cx_connect_timeout.increment(1);
                    }
                    return Err(e.into());
                }
            };
        self.stats.cx_total.increment(1);
        if let Some(shared) = conn.share() {
            host.pool.h2.store(Some(Arc::new(shared)));
        }
        Ok(conn)
    }
}

impl Lease {
    pub fn host(&self) -> &Arc<Host> {
        &self.host
    }

    /// Sends `req` and returns the response with a body that gives the
    /// connection back to the pool once it has been read to the end.
    pub async fn send(mut self, req: Request<Body>) -> Result<Response<PooledBody>, UpstreamError> {
        let stats = &self.cluster.stats;
        stats.rq_total.increment(1);
        if let Err(e) = self.conn.ready().await {
            return Err(UpstreamError::Reset(e));
        }
        let resp = self.conn.send(req).await.map_err(UpstreamError::Reset)?;
        let status = resp.status().as_u16();
        if let Some(c) = stats
            .rq_class
            .get(usize::from(status / 100).wrapping_sub(1))
        {
            c.increment(1);
        }
        stats
            .rq_time
            .record(self.started.elapsed().as_secs_f64() * 1000.0);
        // An upgraded (101) connection belongs to the tunnel now; an HTTP/2
        // connection is shared and never returned.
        let back = match &self.conn {
            ClientConn::Http1(_) if status != 101 => Some(self),
            _ => None,
        };
        Ok(resp.map(|inner| PooledBody { inner, back }))
    }

    /// Counts an upstream timeout against the cluster.
    pub fn count_timeout(cluster: &Cluster) {
        cluster.stats.rq_timeout.increment(1);
    }
}

/// An upstream response body. When it has been read to the end (or dropped
/// after the end), the HTTP/1.1 connection goes back to its pool; dropped
/// early, the connection is closed so no stale bytes reach the next request.
#[derive(Debug)]
pub struct PooledBody {
    inner: Incoming,
    back: Option<Lease>,
}

impl PooledBody {
    fn release(&mut self) {
        if let Some(lease) = self.back.take() {
            let Lease { conn, host, .. } = lease;
            if conn.is_ready() {
                let _ = host.pool.idle.push(conn);
            } else {
                // hyper marks the connection ready a moment after the body's
                // last frame; wait for that off the request path.
                tokio::spawn(async move {
                    let mut conn = conn;
                    if conn.ready().await.is_ok() {
                        let _ = host.pool.idle.push(conn);
                    }
                });
            }
        }
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        if http_body::Body::is_end_stream(&self.inner) {
            self.release();
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

impl Cluster {
    /// Opens a raw TCP connection to `host` (for the TCP proxy), counted in
    /// the cluster's connection stats.
    pub async fn connect_tcp(&self, host: &Host) -> Result<tokio::net::TcpStream, UpstreamError> {
        let attempt = tokio::time::timeout(
            self.connect_timeout(),
            tokio::net::TcpStream::connect(host.addr()),
        )
        .await;
        match attempt {
            Ok(Ok(s)) => {
                self.stats.cx_total.increment(1);
                let _ = s.set_nodelay(true);
                Ok(s)
            }
            Ok(Err(e)) => {
                self.stats.cx_connect_fail.increment(1);
                Err(UpstreamError::Connect(ConnectError::Io(e)))
            }
            Err(_) => {
                self.stats.cx_connect_fail.increment(1);
                self.stats.cx_connect_timeout.increment(1);
                Err(UpstreamError::Connect(ConnectError::Timeout))
            }
        }
    }
}
