//! Load balancing: which host a request goes to.
//!
//! The cluster's hosts are compiled into an immutable [`LbState`] whenever
//! they or their health change (off the request path); a pick reads it
//! through one `ArcSwap` load and never locks or allocates: priority level
//! by Envoy's priority load, then locality (when locality-weighted), then
//! the host by the cluster's policy.

mod hash;
#[cfg(test)]
mod tests;

use std::{
    cell::Cell,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
};

pub use hash::{xxhash64, xxhash64_seeded};
use strait_model::{LbCommon, LbPolicy, SlowStart};

use crate::host::Host;

/// What a request tells the balancer. Built per request on the stack.
#[derive(Debug, Clone, Copy, Default)]
pub struct LbContext<'a> {
    /// The route's `hash_policy` result; hash balancers pick at random
    /// without one, as Envoy does.
    pub hash: Option<u64>,
    /// Hosts to avoid if another is available (a retry's previous hosts).
    pub avoid: &'a [SocketAddr],
}

/// The compiled hosts of one cluster.
#[derive(Debug, Default)]
pub(crate) struct LbState {
    pub(crate) hosts: Vec<Arc<Host>>,
    levels: Vec<Level>,
    /// Cumulative priority load out of 100, one entry per level.
    load: Vec<u32>,
}

#[derive(Debug)]
struct Level {
    /// Fewer healthy hosts than the panic threshold: use all of them.
    panic: bool,
    healthy: Picker,
    all: Picker,
}

/// Hosts of one level, optionally split by locality.
#[derive(Debug)]
struct Picker {
    /// `(cumulative effective locality weight, balancer)`; one entry with
    /// weight 1 when localities are not weighted.
    localities: Vec<(u64, Balancer)>,
}

#[derive(Debug)]
enum Balancer {
    Empty,
    RoundRobin {
        hosts: Vec<Arc<Host>>,
        /// Host indices interleaved by weight (smooth weighted round robin).
        schedule: Vec<u32>,
    },
    Random {
        hosts: Vec<Arc<Host>>,
        /// Cumulative weights; `None` when all are equal.
        cumulative: Option<Vec<u64>>,
    },
    LeastRequest {
        hosts: Vec<Arc<Host>>,
        cumulative: Option<Vec<u64>>,
        /// Effective weights (slow start applied), by host index.
        weights: Vec<u32>,
        choices: u32,
        bias: f64,
    },
    Ring {
        hosts: Vec<Arc<Host>>,
        ring: Vec<(u64, u32)>,
    },
    Maglev {
        hosts: Vec<Arc<Host>>,
        table: Vec<u32>,
    },
}

impl LbState {
    /// Compiles `hosts` under `policy`. Allocates; called when hosts or their
    /// health change, never per request.
    pub(crate) fn build(hosts: Vec<Arc<Host>>, policy: &LbPolicy, common: &LbCommon) -> LbState {
        let max_priority = hosts.iter().map(|h| h.priority()).max().unwrap_or(0) as usize;
        let mut by_level: Vec<Vec<Arc<Host>>> = vec![Vec::new(); max_priority + 1];
        for h in &hosts {
            if let Some(level) = by_level.get_mut(h.priority() as usize) {
                level.push(Arc::clone(h));
            }
        }
        let opf = f64::from(common.overprovisioning_factor) / 100.0;
        // Envoy's per-level health score: healthy share × overprovisioning,
        // as an integer percent capped at 100.
        let health: Vec<u32> = by_level
            .iter()
            .map(|l| {
                if l.is_empty() {
                    return 0;
                }
                let healthy = l.iter().filter(|h| h.is_healthy()).count() as f64;
                ((healthy * 100.0 * opf / l.len() as f64) as u32).min(100)
            })
            .collect();
        let sum: u32 = health.iter().sum();
        let mut load = Vec::with_capacity(health.len());
        if sum >= 100 {
            let mut left = 100u32;
            for h in &health {
                let take = (*h).min(left);
                left -= take;
                load.push(take);
            }
        } else if sum == 0 {
            // Nothing healthy anywhere: everything to the first non-empty
            // level, in panic.
            let first = by_level.iter().position(|l| !l.is_empty()).unwrap_or(0);
            load = (0..health.len())
                .map(|i| if i == first { 100 } else { 0 })
                .collect();
        } else {
            // Normalised: each level's share of the total health.
            load = health.iter().map(|h| h * 100 / sum).collect();
            let given: u32 = load.iter().sum();
            if let Some(first) = load.iter().position(|&l| l > 0) {
                load[first] += 100 - given;
            }
        }
        let mut acc = 0;
        let cumulative = load
            .iter()
            .map(|l| {
                acc += l;
                acc
            })
            .collect();
        let levels = by_level
            .iter()
            .zip(&health)
            .map(|(level, _)| {
                let healthy: Vec<Arc<Host>> =
                    level.iter().filter(|h| h.is_healthy()).cloned().collect();
                // Panic only matters when the levels together cannot take the
                // load (normalised total health under 100%).
                let healthy_pct = if level.is_empty() {
                    0.0
                } else {
                    healthy.len() as f64 * 100.0 / level.len() as f64
                };
                let panic = sum < 100 && healthy_pct < common.healthy_panic_threshold;
                Level {
                    panic,
                    healthy: Picker::build(healthy, policy, common, opf),
                    all: Picker::build(level.clone(), policy, common, opf),
                }
            })
            .collect();
        LbState {
            hosts,
            levels,
            load: cumulative,
        }
    }

    /// One pick. `attempt` varies the choice between attempts of one request.
    pub(crate) fn pick(
        &self,
        hash: Option<u64>,
        attempt: u64,
        rr: &AtomicUsize,
    ) -> Option<(&Arc<Host>, bool)> {
        let r = match hash {
            Some(h) if attempt == 0 => h,
            Some(h) => mix(h.wrapping_add(attempt)),
            None => random(),
        };
        let point = (r % 100) as u32;
        let i = self.load.iter().position(|&c| point < c)?;
        let level = self.levels.get(i)?;
        let picker = if level.panic {
            &level.all
        } else {
            &level.healthy
        };
        picker.pick(hash.map(|_| r), rr).map(|h| (h, level.panic))
    }
}

impl Picker {
    fn build(hosts: Vec<Arc<Host>>, policy: &LbPolicy, common: &LbCommon, opf: f64) -> Picker {
        if !common.locality_weighted || policy.is_hash() {
            return Picker {
                localities: vec![(1, Balancer::build(hosts, policy, common.slow_start))],
            };
        }
        let mut groups: Vec<(Arc<strait_model::Locality>, u32, Vec<Arc<Host>>)> = Vec::new();
        for h in hosts {
            let loc = h.locality();
            match groups.iter_mut().find(|(l, _, _)| **l == *loc) {
                Some(g) => g.2.push(h),
                None => groups.push((loc, h.locality_weight(), vec![h])),
            }
        }
        let mut acc = 0u64;
        let mut localities = Vec::new();
        for (_, weight, group) in groups {
            let healthy = group.iter().filter(|h| h.is_healthy()).count() as f64;
            // Envoy's effective locality weight: its weight scaled by its
            // availability (with overprovisioning), capped at the weight.
            let avail = (healthy * opf / group.len() as f64).min(1.0);
            let eff = (f64::from(weight) * avail).round() as u64;
            if eff == 0 {
                continue;
            }
            acc += eff;
            localities.push((acc, Balancer::build(group, policy, common.slow_start)));
        }
        Picker { localities }
    }

    fn pick(&self, hash: Option<u64>, rr: &AtomicUsize) -> Option<&Arc<Host>> {
        let balancer = match self.localities.as_slice() {
            [] => return None,
            [(_, only)] => only,
            many => {
                let total = many.last().map_or(1, |(c, _)| *c);
                let point = random() % total;
                let i = many.partition_point(|(c, _)| *c <= point);
                &many.get(i)?.1
            }
        };
        balancer.pick(hash, rr)
    }
}

impl Balancer {
    fn build(hosts: Vec<Arc<Host>>, policy: &LbPolicy, slow: Option<SlowStart>) -> Balancer {
        if hosts.is_empty() {
            return Balancer::Empty;
        }
        let slow =
            slow.filter(|_| matches!(policy, LbPolicy::RoundRobin | LbPolicy::LeastRequest { .. }));
        let weights: Vec<u32> = hosts
            .iter()
            .map(|h| match slow {
                // Scaled by 100 so a 10% factor keeps precision; the
                // cluster rebuilds the balancer as the factors grow.
                Some(s) => ((f64::from(h.weight().max(1)) * 100.0 * s.factor(h.warming_for()))
                    .round() as u32)
                    .max(1),
                None => h.weight().max(1),
            })
            .collect();
        let equal = weights.windows(2).all(|w| w[0] == w[1]);
        let cumulative = (!equal).then(|| {
            let mut acc = 0u64;
            weights
                .iter()
                .map(|&w| {
                    acc += u64::from(w);
                    acc
                })
                .collect()
        });
        let keys = || -> Vec<String> { hosts.iter().map(|h| h.addr().to_string()).collect() };
        match *policy {
            LbPolicy::RoundRobin => Balancer::RoundRobin {
                schedule: schedule(&weights),
                hosts,
            },
            LbPolicy::Random => Balancer::Random { hosts, cumulative },
            LbPolicy::LeastRequest {
                choice_count,
                active_request_bias,
            } => Balancer::LeastRequest {
                hosts,
                cumulative,
                weights,
                choices: choice_count.max(1),
                bias: active_request_bias,
            },
            LbPolicy::RingHash {
                minimum_ring_size,
                maximum_ring_size,
            } => Balancer::Ring {
                ring: hash::build_ring(&keys(), &weights, minimum_ring_size, maximum_ring_size),
                hosts,
            },
            LbPolicy::Maglev { table_size } => Balancer::Maglev {
                table: hash::build_maglev(&keys(), &weights, table_size),
                hosts,
            },
        }
    }

    fn pick(&self, hash: Option<u64>, rr: &AtomicUsize) -> Option<&Arc<Host>> {
        match self {
            Balancer::Empty => None,
            Balancer::RoundRobin { hosts, schedule } => {
                let i = rr.fetch_add(1, Ordering::Relaxed) % schedule.len().max(1);
                hosts.get(*schedule.get(i)? as usize)
            }
            Balancer::Random { hosts, cumulative } => {
                hosts.get(weighted_index(hosts.len(), cumulative.as_deref()))
            }
            Balancer::LeastRequest {
                hosts,
                cumulative,
                weights,
                choices,
                bias,
            } => {
                let mut best: Option<(usize, f64)> = None;
                for _ in 0..*choices {
                    let i = weighted_index(hosts.len(), cumulative.as_deref());
                    let h = hosts.get(i)?;
                    let active = h.active_requests() as f64;
                    // Equal weights: fewest active requests (power of two
                    // choices). Weighted: Envoy's weight / (active+1)^bias,
                    // written as a cost so ties keep the first (weighted)
                    // choice and an idle cluster follows the weights.
                    let weight = f64::from(weights.get(i).copied().unwrap_or(1));
                    let cost = match (cumulative.is_some(), *bias) {
                        (false, _) => active,
                        (true, 0.0) => 0.0,
                        (true, 1.0) => active / weight,
                        (true, b) => active.powf(b) / weight,
                    };
                    if best.is_none_or(|(_, c)| cost < c) {
                        best = Some((i, cost));
                    }
                }
                hosts.get(best?.0)
            }
            Balancer::Ring { hosts, ring } => {
                let h = hash.unwrap_or_else(random);
                hosts.get(hash::ring_lookup(ring, h)? as usize)
            }
            Balancer::Maglev { hosts, table } => {
                let h = hash.unwrap_or_else(random);
                let slot = (h % table.len().max(1) as u64) as usize;
                hosts.get(*table.get(slot)? as usize)
            }
        }
    }
}

/// A host index chosen at random, in proportion to weight when weights differ.
fn weighted_index(len: usize, cumulative: Option<&[u64]>) -> usize {
    match cumulative {
        None => (random() % len.max(1) as u64) as usize,
        Some(c) => {
            let total = c.last().copied().unwrap_or(1).max(1);
            let point = random() % total;
            c.partition_point(|&x| x <= point)
        }
    }
}

/// Interleaves host indices by weight (smooth weighted round robin), so that
/// a heavy host is not picked many times in a row.
pub(crate) fn schedule(weights: &[u32]) -> Vec<u32> {
    let all_equal = weights.windows(2).all(|w| w[0] == w[1]);
    if all_equal {
        return (0..weights.len() as u32).collect();
    }
    let total: u64 = weights.iter().map(|&w| u64::from(w.max(1))).sum();
    // Bound the table: weights are scaled down if their sum is huge.
    let scale = (total / 10_000).max(1);
    let weights: Vec<i64> = weights
        .iter()
        .map(|&w| (u64::from(w.max(1)) / scale).max(1) as i64)
        .collect();
    let total: i64 = weights.iter().sum();
    let mut current = vec![0i64; weights.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, w) in current.iter_mut().zip(&weights) {
            *c += w;
        }
        let (best, _) = current
            .iter()
            .enumerate()
            .max_by_key(|(i, c)| (**c, std::cmp::Reverse(*i)))
            .unwrap_or((0, &0));
        current[best] -= total;
        out.push(best as u32);
    }
    out
}

/// splitmix64's finaliser: spreads a counter or hash over all 64 bits.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A fast per-thread pseudo-random number (xorshift64*). No lock, no
/// allocation; seeded per thread from a process-wide counter.
pub(crate) fn random() -> u64 {
    static SEED: AtomicU64 = AtomicU64::new(0x9e37_79b9_7f4a_7c15);
    thread_local! {
        static STATE: Cell<u64> = const { Cell::new(0) };
    }
    STATE.with(|s| {
        let mut x = s.get();
        if x == 0 {
            x = mix(SEED.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)) | 1;
        }
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    })
}
