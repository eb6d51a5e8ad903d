//! Per-host connection pools: idle HTTP/1.1 connections and shared HTTP/2
//! ones, with the guards that count them. Knows nothing of clusters or
//! requests; `lease` checks connections out and back in.

use std::{
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use arc_swap::{ArcSwap, ArcSwapOption};
use crossbeam_queue::ArrayQueue;
use strait_codec::ClientConn;
use strait_tls::ApplicationProtocols;
use tokio::sync::{Notify, futures::Notified};

use crate::breaker::BreakerCounts;

/// Idle HTTP/1.1 connections kept per host. Beyond this, a returned
/// connection is closed.
const MAX_IDLE_PER_HOST: usize = 256;

/// Distinct ALPN overrides a host keeps a pool for. Overrides come from
/// filter configs (Istio's `istio.alpn` sets one list per upstream
/// protocol), so a host sees one or two; the bound only stops a filter
/// that made up lists per request from growing the host without end.
const MAX_ALPN_POOLS: usize = 8;

/// Per-host counters for `/clusters` and least-request balancing, shared
/// with the connection and request guards (which must not keep the host,
/// and so its pool, alive).
#[derive(Debug, Default)]
pub(crate) struct HostCounters {
    pub(crate) rq_active: AtomicU64,
    pub(crate) rq_total: AtomicU64,
    pub(crate) rq_error: AtomicU64,
    pub(crate) rq_success: AtomicU64,
    pub(crate) rq_timeout: AtomicU64,
    pub(crate) cx_active: AtomicU64,
    pub(crate) cx_total: AtomicU64,
    pub(crate) cx_connect_fail: AtomicU64,
}

/// Counts one open connection against the cluster's `max_connections` and
/// the host's `cx_active`; released when the connection is dropped.
#[derive(Debug)]
pub(crate) struct CxGuard {
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
struct SharedConn {
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

    /// An idle, ready connection with its guard and the requests it has
    /// served, if the pool has one. Connections that closed or outstayed
    /// `idle_timeout` while idle are dropped here.
    pub(crate) fn take_idle(
        &self,
        idle_timeout: Option<Duration>,
    ) -> Option<(ClientConn, CxGuard, u32)> {
        let epoch = self.epoch();
        while let Some(c) = self.idle.pop() {
            let expired = idle_timeout.is_some_and(|t| c.idle_since.elapsed() >= t);
            if c.conn.is_ready() && !expired && c._cx.epoch == epoch {
                return Some((c.conn, c._cx, c.uses));
            }
        }
        None
    }

    /// Takes back an HTTP/1.1 connection that has served `uses` requests
    /// and is ready for another (a stale one is closed), and wakes one
    /// request waiting for a connection.
    pub(crate) fn check_in(&self, conn: ClientConn, cx: CxGuard, uses: u32) {
        self.push_idle(PooledConn {
            conn,
            _cx: cx,
            uses,
            idle_since: Instant::now(),
        });
        self.released.notify_one();
    }

    /// Counts a connection about to be opened against the cluster's
    /// `max_connections` and the host's `cx_active`, before the attempt so
    /// concurrent connects respect the limit. Takes the pool's epoch first,
    /// so a transport change racing the connect leaves it stale rather than
    /// pooled.
    pub(crate) fn count_connection(
        &self,
        cluster: &Arc<BreakerCounts>,
        host: &Arc<HostCounters>,
    ) -> CxGuard {
        let epoch = self.epoch();
        cluster.connections.fetch_add(1, Ordering::AcqRel);
        host.cx_active.fetch_add(1, Ordering::AcqRel);
        CxGuard {
            cluster: Arc::clone(cluster),
            host: Arc::clone(host),
            epoch,
        }
    }

    /// Resolves when a connection was returned or closed (a request pending
    /// on `max_connections` may go on). Create it before checking, so a
    /// release in between is not missed.
    pub(crate) fn released(&self) -> Notified<'_> {
        self.released.notified()
    }

    /// Wakes one request waiting for a connection: one was closed.
    pub(crate) fn release_one(&self) {
        self.released.notify_one();
    }

    /// Wakes every request waiting for a connection (a connect failed).
    pub(crate) fn release_all(&self) {
        self.released.notify_waiters();
    }

    /// HTTP/2 connect attempts that have failed so far.
    pub(crate) fn h2_failures(&self) -> u64 {
        self.h2_failures.load(Ordering::Acquire)
    }

    /// Records a failed HTTP/2 connect attempt: requests that waited on it
    /// fail with it.
    pub(crate) fn h2_failed(&self) {
        self.h2_failures.fetch_add(1, Ordering::Release);
    }

    /// Serialises HTTP/2 connects of this host (see `h2_connecting`).
    pub(crate) async fn h2_connect_turn(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.h2_connecting.lock().await
    }

    /// Shares a new HTTP/2 connection: one stream for the request that
    /// opened it (its handle and slot), the rest for later requests. Closed
    /// and used-up connections leave the list (their open streams keep them
    /// alive until they end).
    pub(crate) fn add_shared(
        &self,
        conn: ClientConn,
        cx: CxGuard,
        max_requests: Option<u32>,
    ) -> (Option<ClientConn>, StreamSlot) {
        let lease = conn.share();
        let shared = Arc::new(SharedConn {
            conn,
            _cx: cx,
            uses: AtomicU64::new(1),
            active: AtomicU32::new(1),
        });
        let slot = StreamSlot(Arc::clone(&shared));
        let mut live = self.h2_live(max_requests);
        live.push(shared);
        self.h2.store(Arc::new(live));
        (lease, slot)
    }

    /// A stream on a shared HTTP/2 connection that is open (not after
    /// GOAWAY), has served fewer than `max_requests` streams and has fewer
    /// than `max_streams` open; `None` when none has room.
    pub(crate) fn take_shared(&self, limits: H2Limits) -> Option<(ClientConn, StreamSlot)> {
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

/// A host's pools: the default one, and one per ALPN override
/// ([`ApplicationProtocols`]) that requests asked for. The override is part
/// of the pool's key, as in Envoy's connection pool hash: a connection
/// offering one list never serves a request that asked for another (the
/// peer may have picked a different filter chain by it).
#[derive(Debug)]
pub(crate) struct HostPools {
    default: Arc<Pool>,
    /// Unset (no allocation) until a request brings an override: most
    /// hosts never see one.
    by_alpn: ArcSwapOption<Vec<(ApplicationProtocols, Arc<Pool>)>>,
}

impl HostPools {
    pub(crate) fn new() -> Self {
        HostPools {
            default: Arc::new(Pool::new()),
            by_alpn: ArcSwapOption::empty(),
        }
    }

    /// The pool of connections offering `alpn` (the default pool for
    /// none). Lock-free: one load and a compare per known list (a pointer
    /// compare for the list a filter config shares). The first request
    /// with a new list adds its pool; past [`MAX_ALPN_POOLS`] lists, the
    /// pool is the request's own and its connection is not kept.
    pub(crate) fn get(&self, alpn: Option<&ApplicationProtocols>) -> Arc<Pool> {
        let Some(alpn) = alpn else {
            return Arc::clone(&self.default);
        };
        if let Some(known) = self.by_alpn.load().as_deref()
            && let Some((_, p)) = known.iter().find(|(k, _)| k == alpn)
        {
            return Arc::clone(p);
        }
        let fresh = Arc::new(Pool::new());
        let mut chosen = Arc::clone(&fresh);
        self.by_alpn.rcu(|current| {
            let known = current.as_deref().map_or(&[][..], Vec::as_slice);
            if let Some((_, p)) = known.iter().find(|(k, _)| k == alpn) {
                // Another request added it first.
                chosen = Arc::clone(p);
                return current.clone();
            }
            chosen = Arc::clone(&fresh);
            if known.len() >= MAX_ALPN_POOLS {
                return current.clone();
            }
            let mut more = known.to_vec();
            more.push((alpn.clone(), Arc::clone(&fresh)));
            Some(Arc::new(more))
        });
        chosen
    }

    /// Every pool, the default first.
    fn each(&self, mut f: impl FnMut(&Pool)) {
        f(&self.default);
        if let Some(known) = self.by_alpn.load().as_deref() {
            known.iter().for_each(|(_, p)| f(p));
        }
    }

    /// [`Pool::clear`] on every pool (new transport or protocol).
    pub(crate) fn clear(&self) {
        self.each(Pool::clear);
    }

    /// [`Pool::sweep`] on every pool. Control runtime only.
    pub(crate) fn sweep(&self, timeout: Option<Duration>) {
        self.each(|p| p.sweep(timeout));
    }

    /// Idle HTTP/1.1 connections in every pool.
    pub(crate) fn idle_len(&self) -> usize {
        let mut n = 0;
        self.each(|p| n += p.idle_len());
        n
    }
}

/// Per-connection limits of HTTP/2 pooling.
#[derive(Debug, Clone, Copy)]
pub(crate) struct H2Limits {
    pub(crate) max_requests: Option<u32>,
    pub(crate) max_streams: Option<u32>,
}

/// One open stream on a shared HTTP/2 connection, released when the
/// request's response is done.
#[derive(Debug)]
pub(crate) struct StreamSlot(Arc<SharedConn>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}
