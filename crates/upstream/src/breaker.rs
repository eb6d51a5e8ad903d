//! Circuit breakers: per-cluster limits on connections, pending requests,
//! requests and retries, for each routing priority, counted with atomics.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use strait_model::{self as model, Thresholds};

use crate::cluster::Cluster;

/// Envoy's routing priority, choosing which thresholds apply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RoutingPriority {
    #[default]
    Default,
    High,
}

impl RoutingPriority {
    fn slot(self) -> usize {
        match self {
            RoutingPriority::Default => 0,
            RoutingPriority::High => 1,
        }
    }

    fn thresholds(self, cb: &model::CircuitBreakers) -> &Thresholds {
        match self {
            RoutingPriority::Default => &cb.default,
            RoutingPriority::High => &cb.high,
        }
    }
}

/// Live counts the thresholds are checked against. Shared (`Arc`) with the
/// guards that release them, so a guard never keeps its cluster alive.
#[derive(Debug, Default)]
pub(crate) struct BreakerCounts {
    pub(crate) connections: AtomicU64,
    pending: [AtomicU64; 2],
    requests: [AtomicU64; 2],
    retries: [AtomicU64; 2],
}

/// Which resource a guard holds.
#[derive(Debug, Clone, Copy)]
enum Resource {
    Pending,
    Request,
    Retry,
}

/// Holds one unit of a breaker resource; released on drop.
#[derive(Debug)]
pub struct BreakerGuard {
    counts: Arc<BreakerCounts>,
    resource: Resource,
    slot: usize,
}

/// A granted retry (see [`Cluster::try_retry`]); the retry budget counts it
/// until dropped.
pub type RetryGuard = BreakerGuard;

impl Drop for BreakerGuard {
    fn drop(&mut self) {
        self.counts
            .counter(self.resource, self.slot)
            .fetch_sub(1, Ordering::AcqRel);
    }
}

impl BreakerCounts {
    fn counter(&self, r: Resource, slot: usize) -> &AtomicU64 {
        let arr = match r {
            Resource::Pending => &self.pending,
            Resource::Request => &self.requests,
            Resource::Retry => &self.retries,
        };
        &arr[slot.min(1)]
    }

    /// Takes one unit if the count is under `max`.
    fn acquire(self: &Arc<Self>, r: Resource, slot: usize, max: u64) -> Option<BreakerGuard> {
        let c = self.counter(r, slot);
        if c.fetch_add(1, Ordering::AcqRel) >= max {
            c.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(BreakerGuard {
            counts: Arc::clone(self),
            resource: r,
            slot,
        })
    }
}

impl Cluster {
    /// A request slot under `max_requests`; `None` (counted as
    /// `upstream_rq_pending_overflow`, as Envoy counts it) when the breaker
    /// is open. Lock-free, no allocation.
    pub(crate) fn acquire_request(&self, p: RoutingPriority) -> Option<BreakerGuard> {
        let max = p
            .thresholds(&self.spec.load().circuit_breakers)
            .max_requests;
        let g = self
            .breakers
            .acquire(Resource::Request, p.slot(), u64::from(max));
        if g.is_none() {
            self.stats.rq_pending_overflow.increment(1);
        }
        g
    }

    /// A pending-request slot under `max_pending_requests`.
    pub(crate) fn acquire_pending(&self, p: RoutingPriority) -> Option<BreakerGuard> {
        let max = p
            .thresholds(&self.spec.load().circuit_breakers)
            .max_pending_requests;
        let g = self
            .breakers
            .acquire(Resource::Pending, p.slot(), u64::from(max));
        if g.is_none() {
            self.stats.rq_pending_overflow.increment(1);
        }
        g
    }

    /// True when another connection may be opened under `max_connections`;
    /// counts `upstream_cx_overflow` when not.
    pub(crate) fn connection_allowed(&self) -> bool {
        let max = self.spec.load().circuit_breakers.default.max_connections;
        let ok = self.breakers.connections.load(Ordering::Acquire) < u64::from(max);
        if !ok {
            self.stats.cx_overflow.increment(1);
        }
        ok
    }

    /// Asks the retry breaker for one retry at `priority`: `max_retries`
    /// concurrent retries, or with a `retry_budget`, `budget_percent` of the
    /// active and pending requests (never fewer than
    /// `min_retry_concurrency`). `None` means do not retry; it is counted as
    /// `upstream_rq_retry_overflow`. Hold the guard while the retry is in
    /// flight. Lock-free, no allocation.
    pub fn try_retry(&self, priority: RoutingPriority) -> Option<RetryGuard> {
        let spec = self.spec.load();
        let t = priority.thresholds(&spec.circuit_breakers);
        let slot = priority.slot();
        let max = match t.retry_budget {
            None => u64::from(t.max_retries),
            Some(b) => {
                let active = self.breakers.requests[slot].load(Ordering::Acquire)
                    + self.breakers.pending[slot].load(Ordering::Acquire);
                let budget = (active as f64 * b.budget_percent / 100.0) as u64;
                budget.max(u64::from(b.min_retry_concurrency))
            }
        };
        let g = self.breakers.acquire(Resource::Retry, slot, max);
        if g.is_none() {
            self.stats.rq_retry_overflow.increment(1);
        }
        g
    }

    /// Requests in flight at `priority` (for tests and `/clusters`).
    pub fn active_requests(&self, priority: RoutingPriority) -> u64 {
        self.breakers.requests[priority.slot()].load(Ordering::Acquire)
    }

    /// Open upstream connections of this cluster.
    pub fn active_connections(&self) -> u64 {
        self.breakers.connections.load(Ordering::Acquire)
    }
}
