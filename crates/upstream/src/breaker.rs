//! Circuit breakers: per-cluster limits on connections, pending requests,
//! requests and retries, for each routing priority, counted with atomics.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use strait_model::{self as model, Thresholds};

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

/// A granted retry (see [`crate::Cluster::try_retry`]); the retry budget counts it
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

impl BreakerCounts {
    /// A request slot under `max_requests` at priority `p`; `None` when the
    /// breaker is open. Lock-free, no allocation.
    pub(crate) fn request(
        self: &Arc<Self>,
        cb: &model::CircuitBreakers,
        p: RoutingPriority,
    ) -> Option<BreakerGuard> {
        let max = p.thresholds(cb).max_requests;
        self.acquire(Resource::Request, p.slot(), u64::from(max))
    }

    /// A pending-request slot under `max_pending_requests`.
    pub(crate) fn pending(
        self: &Arc<Self>,
        cb: &model::CircuitBreakers,
        p: RoutingPriority,
    ) -> Option<BreakerGuard> {
        let max = p.thresholds(cb).max_pending_requests;
        self.acquire(Resource::Pending, p.slot(), u64::from(max))
    }

    /// True when another connection may be opened under `max_connections`.
    pub(crate) fn connection_allowed(&self, cb: &model::CircuitBreakers) -> bool {
        self.connections.load(Ordering::Acquire) < u64::from(cb.default.max_connections)
    }

    /// One retry at `priority`: `max_retries` concurrent retries, or with a
    /// `retry_budget`, `budget_percent` of the active and pending requests
    /// (never fewer than `min_retry_concurrency`).
    pub(crate) fn retry(
        self: &Arc<Self>,
        cb: &model::CircuitBreakers,
        priority: RoutingPriority,
    ) -> Option<RetryGuard> {
        let t = priority.thresholds(cb);
        let slot = priority.slot();
        let max = match t.retry_budget {
            None => u64::from(t.max_retries),
            Some(b) => {
                let active = self.requests[slot].load(Ordering::Acquire)
                    + self.pending[slot].load(Ordering::Acquire);
                let budget = (active as f64 * b.budget_percent / 100.0) as u64;
                budget.max(u64::from(b.min_retry_concurrency))
            }
        };
        self.acquire(Resource::Retry, slot, max)
    }

    /// Requests in flight at `priority`.
    pub(crate) fn active_requests(&self, priority: RoutingPriority) -> u64 {
        self.requests[priority.slot()].load(Ordering::Acquire)
    }
}
