//! One upstream host: its address, balancing metadata, health flags,
//! per-host counters and connection pool.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use arc_swap::{ArcSwap, ArcSwapOption};
use strait_model::{self as model, EndpointHealth, Locality};
use strait_tls::ClientTls;

use crate::pool::{HostCounters, HostPools};

/// `transport_choice` when no `transport_socket_matches` entry applies.
const NO_MATCH: usize = usize::MAX;

/// Health flag bits; a host takes traffic (outside panic) only when none is set.
pub(crate) const FAILED_ACTIVE_HC: u8 = 1;
pub(crate) const FAILED_OUTLIER: u8 = 2;
/// The control plane reported the endpoint UNHEALTHY, DRAINING or TIMEOUT.
pub(crate) const FAILED_EDS: u8 = 4;
/// Health checks are configured and this host has not passed one yet.
pub(crate) const PENDING_ACTIVE_HC: u8 = 8;

/// One upstream address and its connection pool. A host keeps its identity
/// (pool, health, ejections) across endpoint updates as long as its address
/// stays; weight, priority and locality may change under it.
#[derive(Debug)]
pub struct Host {
    addr: SocketAddr,
    /// The endpoint's DNS name when it was resolved from one (STRICT_DNS);
    /// empty for IP literals. Route `auto_host_rewrite` sends it as Host.
    hostname: Box<str>,
    weight: AtomicU32,
    priority: AtomicU32,
    locality_weight: AtomicU32,
    locality: ArcSwap<Locality>,
    eds_health: AtomicU8,
    flags: AtomicU8,
    /// The default pool and one per ALPN override requests asked for.
    pub(crate) pools: HostPools,
    /// The transport socket this host's endpoint metadata chose (`None`:
    /// plaintext). Pools are per host, so one choice per host keys them.
    transport: ArcSwapOption<ClientTls>,
    /// Which `transport_socket_matches` entry chose it; [`NO_MATCH`] for the
    /// cluster's own socket.
    transport_choice: AtomicUsize,
    /// Counters shared with connection and request guards, which must not
    /// keep the host (and so its pool) alive.
    pub(crate) counters: Arc<HostCounters>,
    pub(crate) outlier: OutlierState,
    /// Consecutive active health check results: successes in the low half,
    /// failures in the high half, so one store resets the other.
    pub(crate) hc_streak: AtomicU64,
    /// When the host joined or last became healthy again after failing
    /// active health checks (slow start counts from it), in milliseconds
    /// since [`epoch`].
    warming_since_ms: AtomicU64,
}

/// The process's reference instant for host timestamps kept in atomics.
fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Milliseconds since [`epoch`], offset by a day so that instants before the
/// epoch (a host aged in tests) stay representable.
fn now_ms() -> u64 {
    const OFFSET_MS: u64 = 86_400_000;
    u64::try_from(epoch().elapsed().as_millis())
        .unwrap_or(u64::MAX)
        .saturating_add(OFFSET_MS)
}

/// Per-host outlier detector state, read and written by [`crate::outlier`].
#[derive(Debug, Default)]
pub(crate) struct OutlierState {
    pub(crate) consecutive_5xx: AtomicU32,
    pub(crate) consecutive_gateway: AtomicU32,
    pub(crate) consecutive_local: AtomicU32,
    /// Times ejected; the ejection lasts `base_ejection_time` × this.
    pub(crate) ejections: AtomicU32,
    pub(crate) ejected_at_ms: AtomicU64,
    /// Requests answered by the upstream in this interval, and how many of
    /// them succeeded (for success-rate and failure-percentage ejection).
    pub(crate) interval_total: AtomicU64,
    pub(crate) interval_success: AtomicU64,
}

impl Host {
    /// The DNS name this host was resolved from; empty for IP endpoints.
    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    pub(crate) fn new(addr: SocketAddr, ep: &model::Endpoint, health_checked: bool) -> Host {
        let hostname = if ep.host.parse::<std::net::IpAddr>().is_ok() {
            Box::default()
        } else {
            ep.host.as_str().into()
        };
        let host = Host {
            addr,
            hostname,
            weight: AtomicU32::new(ep.weight.max(1)),
            priority: AtomicU32::new(ep.priority),
            locality_weight: AtomicU32::new(ep.locality_weight),
            locality: ArcSwap::from_pointee(ep.locality.clone()),
            eds_health: AtomicU8::new(health_code(ep.health)),
            flags: AtomicU8::new(0),
            pools: HostPools::new(),
            transport: ArcSwapOption::empty(),
            transport_choice: AtomicUsize::new(NO_MATCH),
            counters: Arc::new(HostCounters::default()),
            outlier: OutlierState::default(),
            hc_streak: AtomicU64::new(0),
            warming_since_ms: AtomicU64::new(now_ms()),
        };
        if health_checked {
            // Envoy keeps a new host out of rotation until it passes a check.
            host.set_flag(FAILED_ACTIVE_HC | PENDING_ACTIVE_HC, true);
        }
        host.apply(ep);
        host
    }

    /// Takes the endpoint's metadata; true when anything the balancers read
    /// changed.
    pub(crate) fn apply(&self, ep: &model::Endpoint) -> bool {
        let mut changed = self.weight.swap(ep.weight.max(1), Ordering::Relaxed) != ep.weight.max(1);
        changed |= self.priority.swap(ep.priority, Ordering::Relaxed) != ep.priority;
        changed |= self
            .locality_weight
            .swap(ep.locality_weight, Ordering::Relaxed)
            != ep.locality_weight;
        if **self.locality.load() != ep.locality {
            self.locality.store(Arc::new(ep.locality.clone()));
            changed = true;
        }
        self.eds_health
            .store(health_code(ep.health), Ordering::Relaxed);
        changed |= self.set_flag(FAILED_EDS, !ep.health.is_usable());
        changed
    }

    /// Sets the transport socket for new connections. When the endpoint's
    /// metadata now picks another `transport_socket_matches` entry, pooled
    /// connections (which speak the old one) are closed.
    pub(crate) fn set_transport(&self, choice: Option<usize>, tls: Option<&ClientTls>) {
        let code = choice.unwrap_or(NO_MATCH);
        let before = self.transport_choice.swap(code, Ordering::AcqRel);
        // Store before clearing so no new connection uses the old socket.
        self.transport.store(tls.cloned().map(Arc::new));
        if before != code {
            self.pools.clear();
        }
    }

    /// The transport socket for a new connection (`None`: plaintext). One
    /// atomic load; called per new connection, not per request.
    pub(crate) fn transport(&self) -> Option<Arc<ClientTls>> {
        self.transport.load_full()
    }

    /// Which `transport_socket_matches` entry this host uses; `None` for the
    /// cluster's own `transport_socket` (for `/clusters` and tests).
    pub fn transport_match(&self) -> Option<usize> {
        match self.transport_choice.load(Ordering::Relaxed) {
            NO_MATCH => None,
            i => Some(i),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }

    /// How long since the host joined or last recovered from failing active
    /// health checks (the slow start clock).
    pub fn warming_for(&self) -> Duration {
        Duration::from_millis(
            now_ms().saturating_sub(self.warming_since_ms.load(Ordering::Relaxed)),
        )
    }

    /// Restarts the slow start clock (the host passed its checks again).
    pub(crate) fn restart_warming(&self) {
        self.warming_since_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// Moves the slow start clock back by `by` (tests of the ramp).
    #[cfg(test)]
    pub(crate) fn age(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        let since = self.warming_since_ms.load(Ordering::Relaxed);
        self.warming_since_ms
            .store(since.saturating_sub(ms), Ordering::Relaxed);
    }

    pub fn priority(&self) -> u32 {
        self.priority.load(Ordering::Relaxed)
    }

    pub fn locality(&self) -> Arc<Locality> {
        self.locality.load_full()
    }

    pub(crate) fn locality_weight(&self) -> u32 {
        self.locality_weight.load(Ordering::Relaxed)
    }

    /// The health status the control plane gave (Envoy's `eds_health_status`).
    pub fn eds_health(&self) -> EndpointHealth {
        match self.eds_health.load(Ordering::Relaxed) {
            1 => EndpointHealth::Healthy,
            2 => EndpointHealth::Unhealthy,
            3 => EndpointHealth::Draining,
            4 => EndpointHealth::Timeout,
            5 => EndpointHealth::Degraded,
            _ => EndpointHealth::Unknown,
        }
    }

    /// True when no health flag keeps this host out of rotation.
    pub fn is_healthy(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & (FAILED_ACTIVE_HC | FAILED_OUTLIER | FAILED_EDS) == 0
    }

    pub fn failed_active_health_check(&self) -> bool {
        self.has_flag(FAILED_ACTIVE_HC)
    }

    pub fn failed_outlier_check(&self) -> bool {
        self.has_flag(FAILED_OUTLIER)
    }

    pub(crate) fn has_flag(&self, flag: u8) -> bool {
        self.flags.load(Ordering::Relaxed) & flag != 0
    }

    /// Sets or clears `flag`; true when that changed it.
    pub(crate) fn set_flag(&self, flag: u8, on: bool) -> bool {
        let before = if on {
            self.flags.fetch_or(flag, Ordering::AcqRel)
        } else {
            self.flags.fetch_and(!flag, Ordering::AcqRel)
        };
        (before & flag != 0) != on
    }

    /// Requests now in flight to this host (least-request balancing).
    pub fn active_requests(&self) -> u64 {
        self.counters.rq_active.load(Ordering::Relaxed)
    }

    /// Idle pooled HTTP/1.1 connections (for `/clusters` and tests).
    pub fn idle_connections(&self) -> usize {
        self.pools.idle_len()
    }

    /// Counters for `/clusters`: `(name, value)` in Envoy's order.
    pub fn stats(&self) -> [(&'static str, u64); 8] {
        let c = &self.counters;
        let v = |a: &AtomicU64| a.load(Ordering::Relaxed);
        [
            ("cx_active", v(&c.cx_active)),
            ("cx_connect_fail", v(&c.cx_connect_fail)),
            ("cx_total", v(&c.cx_total)),
            ("rq_active", v(&c.rq_active)),
            ("rq_error", v(&c.rq_error)),
            ("rq_success", v(&c.rq_success)),
            ("rq_timeout", v(&c.rq_timeout)),
            ("rq_total", v(&c.rq_total)),
        ]
    }
}

fn health_code(h: EndpointHealth) -> u8 {
    match h {
        EndpointHealth::Unknown => 0,
        EndpointHealth::Healthy => 1,
        EndpointHealth::Unhealthy => 2,
        EndpointHealth::Draining => 3,
        EndpointHealth::Timeout => 4,
        EndpointHealth::Degraded => 5,
    }
}
