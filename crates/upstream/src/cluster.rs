//! One live cluster: its hosts, round-robin position, and stats.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use arc_swap::ArcSwap;
use metrics::Counter;
use strait_codec::Protocol;
use strait_model::{self as model, Discovery, UpstreamProtocol};
use strait_tls::ClusterTransports;
use tokio::sync::Notify;

use crate::{
    breaker::{BreakerCounts, BreakerGuard, RetryGuard, RoutingPriority},
    host::Host,
    lb::{LbContext, LbState},
    stats::{ClusterStats, StatsRecorder},
};

/// How many times a pick may land on a host that must be skipped (ejected
/// since the balancer was built, or a retry's previous host) before the
/// cluster settles for what it found, as Envoy's
/// `host_selection_retry_max_attempts`.
const PICK_ATTEMPTS: u64 = 3;

/// A live cluster. Its spec may be replaced by [`Cluster::update`] and its
/// endpoints by [`Cluster::set_endpoints`]; hosts that survive either keep
/// their pooled connections, health and ejections.
#[derive(Debug)]
pub struct Cluster {
    name: String,
    pub(crate) spec: ArcSwap<model::Cluster>,
    /// The compiled transport sockets; each host holds the one its
    /// endpoint metadata chose.
    pub(crate) transports: ArcSwap<ClusterTransports>,
    pub(crate) lb: ArcSwap<LbState>,
    rr: AtomicUsize,
    /// Wakes the DNS resolver early when the spec changes.
    refresh: Notify,
    /// Wakes the maintenance task: hosts or their health changed, so the
    /// balancer must be rebuilt.
    changed: Notify,
    stopped: AtomicBool,
    pub(crate) breakers: Arc<BreakerCounts>,
    pub(crate) stats: ClusterStats,
    /// For the counters registered on demand ([`Cluster::counter`]).
    recorder: StatsRecorder,
    /// ORIGINAL_DST: the hosts made for destinations so far, so connections
    /// to one destination share its pool. Copy-on-write: read lock-free,
    /// written only when a new destination first appears.
    original_dst: ArcSwap<HashMap<SocketAddr, Arc<Host>>>,
}

/// At most this many ORIGINAL_DST hosts are remembered per cluster; beyond
/// it (passthrough traffic to very many destinations) a host is made per
/// connection and not kept, so memory stays bounded.
const MAX_ORIGINAL_DST_HOSTS: usize = 1024;

impl Cluster {
    /// A live cluster with no hosts yet: [`Cluster::resolve`] makes them.
    /// Its upkeep (DNS refresh, maintenance) is started by `upkeep::start`.
    pub(crate) fn new(
        spec: &model::Cluster,
        tls: ClusterTransports,
        recorder: &StatsRecorder,
    ) -> Arc<Cluster> {
        Arc::new(Cluster {
            name: spec.name.clone(),
            spec: ArcSwap::from_pointee(spec.clone()),
            transports: ArcSwap::from_pointee(tls),
            lb: ArcSwap::from_pointee(LbState::default()),
            rr: AtomicUsize::new(0),
            refresh: Notify::new(),
            changed: Notify::new(),
            stopped: AtomicBool::new(false),
            breakers: Arc::new(BreakerCounts::default()),
            stats: ClusterStats::new(&spec.name, recorder),
            recorder: recorder.clone(),
            original_dst: ArcSwap::from_pointee(HashMap::new()),
        })
    }

    /// ORIGINAL_DST: the host for destination `addr` (the downstream
    /// connection's original destination, or the address a request header
    /// named). Lock-free when `addr` was seen before; otherwise allocates
    /// the host once.
    pub fn original_dst_host(&self, addr: SocketAddr) -> Arc<Host> {
        if let Some(h) = self.original_dst.load().get(&addr) {
            return Arc::clone(h);
        }
        let host = Arc::new(Host::new(
            addr,
            &model::Endpoint::new(addr.ip().to_string(), addr.port(), 1),
            false,
        ));
        if self.original_dst.load().len() < MAX_ORIGINAL_DST_HOSTS {
            self.original_dst.rcu(|hosts| {
                let mut hosts = (**hosts).clone();
                hosts.entry(addr).or_insert_with(|| Arc::clone(&host));
                hosts
            });
        }
        self.original_dst.load().get(&addr).cloned().unwrap_or(host)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cluster's counter `name` (labelled with the cluster's name) in the
    /// proxy's recorder, for counters not among the cluster's own stats.
    /// Registers on every call (a lookup under the recorder's lock): for
    /// rare events such as retries, not for every request.
    pub fn counter(&self, name: &'static str) -> Counter {
        metrics::with_local_recorder(
            &*self.recorder.0,
            || metrics::counter!(name, "envoy_cluster_name" => self.name.clone()),
        )
    }

    /// Adds bytes moved on a connection this cluster does not drive itself
    /// (the TCP proxy's splice).
    pub fn count_bytes(&self, received: u64, sent: u64) {
        use strait_codec::ByteCounter;
        self.stats.bytes.received(received);
        self.stats.bytes.sent(sent);
    }

    /// The spec currently in force.
    pub fn spec(&self) -> Arc<model::Cluster> {
        self.spec.load_full()
    }

    /// The protocol for a request that came over HTTP/2 (`downstream_h2`)
    /// or not: fixed by the cluster, or the downstream's.
    /// Whether a request that came over HTTP/2 (`downstream_h2`) or not
    /// goes upstream over HTTP/2 (Envoy's `upstreamHttpProtocol`, for
    /// filters that decide by it, such as Istio's `istio.alpn`).
    pub fn upstream_http2(&self, downstream_h2: bool) -> bool {
        matches!(self.protocol(downstream_h2), Protocol::Http2)
    }

    pub(crate) fn protocol(&self, downstream_h2: bool) -> Protocol {
        match self.spec.load().protocol {
            UpstreamProtocol::Http1 => Protocol::Http1,
            UpstreamProtocol::Http2 => Protocol::Http2,
            UpstreamProtocol::Downstream if downstream_h2 => Protocol::Http2,
            UpstreamProtocol::Downstream => Protocol::Http1,
        }
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        self.spec.load().connect_timeout
    }

    /// The hosts as of now (allocates; for admin and tests).
    pub fn hosts(&self) -> Vec<Arc<Host>> {
        self.lb.load().hosts.clone()
    }

    /// Picks a host by the cluster's balancer, as [`Cluster::pick_with`]
    /// with no hash and nothing to avoid.
    pub fn pick(&self) -> Option<Arc<Host>> {
        self.pick_with(&LbContext::default())
    }

    /// Picks a host: priority level by Envoy's priority load (panic mode when
    /// too few hosts are healthy), locality, then host by the cluster's
    /// policy, using `ctx.hash` for RING_HASH and MAGLEV. Hosts in
    /// `ctx.avoid` are skipped if another can be found. `None` when no host
    /// can take traffic (Envoy's "no healthy upstream"). Lock-free and
    /// allocation-free: one `ArcSwap` load and a few atomics.
    pub fn pick_with(&self, ctx: &LbContext<'_>) -> Option<Arc<Host>> {
        let state = self.lb.load();
        let mut fallback = None;
        for attempt in 0..PICK_ATTEMPTS {
            let Some((host, panic)) = state.pick(ctx.hash, attempt, &self.rr) else {
                break;
            };
            // Health may have changed since the balancer was built.
            if !panic && !host.is_healthy() {
                continue;
            }
            if !ctx.avoid.contains(&host.addr()) {
                return Some(Arc::clone(host));
            }
            fallback.get_or_insert(host);
        }
        if fallback.is_none() {
            self.stats.no_healthy.increment(1);
        }
        fallback.map(Arc::clone)
    }

    /// Replaces the cluster's endpoints (the EDS path: a
    /// `ClusterLoadAssignment` flattened to [`model::Endpoint`]s, whose
    /// hosts must be IP addresses; others are skipped with a warning).
    /// Hosts whose address remains keep their pools, health and ejections.
    pub fn set_endpoints(&self, endpoints: &[model::Endpoint]) {
        let mut resolved = Vec::with_capacity(endpoints.len());
        for ep in endpoints {
            match ep.host.parse::<IpAddr>() {
                Ok(ip) => resolved.push((SocketAddr::new(ip, ep.port), ep.clone())),
                Err(_) => {
                    tracing::warn!(cluster = %self.name, host = %ep.host, "endpoint is not an IP address; skipped");
                }
            }
        }
        self.install(resolved);
    }

    /// A request slot under `max_requests`; `None` (counted as
    /// `upstream_rq_pending_overflow`, as Envoy counts it) when the breaker
    /// is open. Lock-free, no allocation.
    pub(crate) fn acquire_request(&self, p: RoutingPriority) -> Option<BreakerGuard> {
        let g = self.breakers.request(&self.spec.load().circuit_breakers, p);
        if g.is_none() {
            self.stats.rq_pending_overflow.increment(1);
        }
        g
    }

    /// A pending-request slot under `max_pending_requests`.
    pub(crate) fn acquire_pending(&self, p: RoutingPriority) -> Option<BreakerGuard> {
        let g = self.breakers.pending(&self.spec.load().circuit_breakers, p);
        if g.is_none() {
            self.stats.rq_pending_overflow.increment(1);
        }
        g
    }

    /// True when another connection may be opened under `max_connections`;
    /// counts `upstream_cx_overflow` when not.
    pub(crate) fn connection_allowed(&self) -> bool {
        let ok = self
            .breakers
            .connection_allowed(&self.spec.load().circuit_breakers);
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
        let g = self
            .breakers
            .retry(&self.spec.load().circuit_breakers, priority);
        if g.is_none() {
            self.stats.rq_retry_overflow.increment(1);
        }
        g
    }

    /// Requests in flight at `priority` (for tests and `/clusters`).
    pub fn active_requests(&self, priority: RoutingPriority) -> u64 {
        self.breakers.active_requests(priority)
    }

    /// Open upstream connections of this cluster.
    pub fn active_connections(&self) -> u64 {
        self.breakers.connections.load(Ordering::Acquire)
    }

    /// Rebuilds the balancer from the current hosts and their health.
    /// Allocates; off the request path.
    pub fn rebuild(&self) {
        let spec = self.spec.load();
        let hosts = self.lb.load().hosts.clone();
        self.lb.store(Arc::new(LbState::build(
            hosts,
            &spec.lb_policy,
            &spec.lb_common,
        )));
    }

    /// Notes that a host's health changed: the maintenance task rebuilds the
    /// balancer. Cheap enough for the request path.
    pub(crate) fn hosts_changed(&self) {
        self.changed.notify_one();
    }

    /// Applies a changed spec, keeping hosts (and pools) that remain.
    pub(crate) async fn update(&self, spec: &model::Cluster, tls: ClusterTransports) {
        let old = self.spec.load_full();
        if *old == *spec {
            return;
        }
        self.transports.store(Arc::new(tls));
        // Pooled connections speak the old protocol or TLS settings.
        let protocol_changed = old.protocol != spec.protocol
            || old.tls != spec.tls
            || old.transport_socket_matches != spec.transport_socket_matches;
        self.spec.store(Arc::new(spec.clone()));
        if protocol_changed {
            for h in &self.lb.load().hosts {
                h.pools.clear();
            }
        }
        self.resolve().await;
        if old.lb_policy != spec.lb_policy || old.lb_common != spec.lb_common {
            self.rebuild();
        }
        self.refresh.notify_one();
        self.changed.notify_one();
    }

    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        self.refresh.notify_one();
        self.changed.notify_one();
    }

    /// True once the cluster was removed: its upkeep tasks end.
    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }

    /// Resolves when the spec changed or the cluster stopped (the DNS
    /// refresher re-resolves early).
    pub(crate) fn refresh_requested(&self) -> tokio::sync::futures::Notified<'_> {
        self.refresh.notified()
    }

    /// Resolves when hosts or their health changed (see
    /// [`Cluster::hosts_changed`]) or the cluster stopped.
    pub(crate) fn hosts_changed_notice(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }

    /// Closes idle connections past `idle_timeout` (and dead shared ones)
    /// in every host's pool, ORIGINAL_DST hosts included.
    pub(crate) fn sweep_pools(&self, idle_timeout: Option<Duration>) {
        for h in &self.lb.load().hosts {
            h.pools.sweep(idle_timeout);
        }
        for h in self.original_dst.load().values() {
            h.pools.sweep(idle_timeout);
        }
    }

    /// Resolves the spec's endpoints into hosts and swaps them in.
    pub(crate) async fn resolve(&self) {
        let spec = self.spec.load_full();
        let mut resolved: Vec<(SocketAddr, model::Endpoint)> = Vec::new();
        for ep in &spec.endpoints {
            if let Ok(ip) = ep.host.parse::<IpAddr>() {
                resolved.push((SocketAddr::new(ip, ep.port), ep.clone()));
                continue;
            }
            match tokio::net::lookup_host((ep.host.as_str(), ep.port)).await {
                Ok(found) => {
                    let mut found = by_family(found.collect(), &spec.discovery);
                    if matches!(spec.discovery, Discovery::LogicalDns { .. }) {
                        // Envoy's logical DNS host: the first address only,
                        // for new connections; open ones stay where they are.
                        found.truncate(1);
                    }
                    resolved.extend(found.into_iter().map(|a| (a, ep.clone())));
                }
                Err(e) => {
                    tracing::warn!(cluster = %self.name, host = %ep.host, error = %e, "DNS resolution failed");
                    // Keep the last good hosts for this name rather than
                    // dropping traffic on a transient resolver failure.
                    let current = self.lb.load();
                    resolved.extend(
                        current
                            .hosts
                            .iter()
                            .filter(|h| h.addr().port() == ep.port)
                            .map(|h| (h.addr(), ep.clone())),
                    );
                }
            }
        }
        self.install(resolved);
    }

    /// Swaps in hosts for `resolved`, reusing live hosts by address.
    fn install(&self, mut resolved: Vec<(SocketAddr, model::Endpoint)>) {
        let mut seen = std::collections::HashSet::new();
        resolved.retain(|(a, _)| seen.insert(*a));
        let spec = self.spec.load();
        let transports = self.transports.load();
        let checked = !spec.health_checks.is_empty();
        let current = self.lb.load();
        let mut changed = false;
        let hosts: Vec<Arc<Host>> = resolved
            .iter()
            .map(|(addr, ep)| {
                let host = match current.hosts.iter().find(|h| h.addr() == *addr) {
                    Some(h) => {
                        changed |= h.apply(ep);
                        Arc::clone(h)
                    }
                    None => Arc::new(Host::new(*addr, ep, checked)),
                };
                let choice = spec.transport_match(&ep.transport_metadata);
                host.set_transport(choice, transports.get(choice));
                host
            })
            .collect();
        let same = hosts.len() == current.hosts.len()
            && hosts
                .iter()
                .zip(&current.hosts)
                .all(|(a, b)| Arc::ptr_eq(a, b));
        if same && !changed {
            return;
        }
        self.lb.store(Arc::new(LbState::build(
            hosts,
            &spec.lb_policy,
            &spec.lb_common,
        )));
    }
}

/// Envoy's `dns_lookup_family`: which resolved addresses become hosts.
fn by_family(found: Vec<SocketAddr>, discovery: &Discovery) -> Vec<SocketAddr> {
    use strait_model::DnsLookupFamily as F;
    let (Discovery::StrictDns { lookup_family, .. } | Discovery::LogicalDns { lookup_family, .. }) =
        discovery
    else {
        return found;
    };
    let (v4, v6): (Vec<SocketAddr>, Vec<SocketAddr>) =
        found.into_iter().partition(SocketAddr::is_ipv4);
    match lookup_family {
        F::V4Only => v4,
        F::V6Only => v6,
        F::Auto if !v6.is_empty() => v6,
        F::Auto => v4,
        F::V4Preferred if !v4.is_empty() => v4,
        F::V4Preferred => v6,
        F::All => v6.into_iter().chain(v4).collect(),
    }
}

#[cfg(test)]
mod tests {
    use strait_model::{self as model, tls::UpstreamTls};
    use strait_tls::ClusterTransports;

    use crate::{ClusterRegistry, lb::schedule};

    /// Hosts labelled `tlsMode: istio` take the TLS match, the rest the
    /// plaintext one; a label change moves a host and its pool follows.
    #[test]
    fn each_host_takes_the_transport_its_labels_choose() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let mut spec = model::Cluster {
            name: "c".into(),
            ..pick_spec()
        };
        let labelled = |ip: &str, istio: bool| {
            let mut ep = model::Endpoint::new(ip, 80, 1);
            if istio {
                ep.transport_metadata
                    .insert("tlsMode".into(), serde_json::Value::from("istio"));
            }
            ep
        };
        spec.endpoints = vec![labelled("10.0.0.1", true), labelled("10.0.0.2", false)];
        spec.transport_socket_matches = vec![
            model::TransportSocketMatch {
                name: "tlsMode-istio".into(),
                criteria: [("tlsMode".to_owned(), serde_json::Value::from("istio"))]
                    .into_iter()
                    .collect(),
                tls: Some(UpstreamTls::default()),
            },
            model::TransportSocketMatch {
                name: "tlsMode-disabled".into(),
                criteria: model::Metadata::new(),
                tls: None,
            },
        ];
        let registry = ClusterRegistry::new(std::sync::Arc::new(metrics::NoopRecorder));
        let transports = ClusterTransports::compile(&spec).expect("compiles");
        rt.block_on(registry.reconcile(std::slice::from_ref(&spec), &|_| transports.clone()));
        let cluster = registry.get("c").expect("cluster");
        let by_ip = |ip: &str| {
            let h = cluster
                .hosts()
                .into_iter()
                .find(|h| h.addr().ip().to_string() == ip)
                .expect("host");
            (h.transport_match(), h.transport().is_some())
        };
        assert_eq!(by_ip("10.0.0.1"), (Some(0), true));
        assert_eq!(by_ip("10.0.0.2"), (Some(1), false));

        // EDS relabels the first host: it keeps its identity, loses TLS.
        let before = cluster.hosts();
        cluster.set_endpoints(&[labelled("10.0.0.1", false), labelled("10.0.0.2", false)]);
        assert_eq!(by_ip("10.0.0.1"), (Some(1), false));
        assert!(
            cluster
                .hosts()
                .iter()
                .any(|h| before.iter().any(|b| std::sync::Arc::ptr_eq(b, h)))
        );
    }

    fn pick_spec() -> model::Cluster {
        model::Cluster::new("c")
    }

    #[test]
    fn schedule_honours_weights_and_interleaves() {
        let s = schedule(&[3, 1]);
        assert_eq!(s.len(), 4);
        assert_eq!(s.iter().filter(|&&i| i == 0).count(), 3);
        let s = schedule(&[1, 1, 1]);
        assert_eq!(s, vec![0, 1, 2]);
        let s = schedule(&[5, 5, 1]);
        assert_ne!(s[0], s[1], "smooth schedule alternates heavy hosts: {s:?}");
    }
}
