//! Distribution tests: weights honoured, consistency of the hash balancers,
//! least-request preference, priority failover and panic mode.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, atomic::AtomicUsize},
};

use strait_model::{Endpoint, LbCommon, LbPolicy, SlowStart};

use super::{LbState, mix};
use crate::host::{FAILED_ACTIVE_HC, FAILED_OUTLIER, Host};

const PICKS: usize = 10_000;

fn host(i: u32, weight: u32, priority: u32) -> Arc<Host> {
    let addr: SocketAddr = format!("10.0.{}.{}:80", i / 250, i % 250 + 1)
        .parse()
        .expect("addr");
    let mut ep = Endpoint::new(addr.ip().to_string(), 80, weight);
    ep.priority = priority;
    Arc::new(Host::new(addr, &ep, false))
}

fn state(hosts: &[Arc<Host>], policy: LbPolicy) -> LbState {
    LbState::build(hosts.to_vec(), &policy, &LbCommon::default())
}

/// Share of picks per host address, in percent.
fn shares(s: &LbState, hashed: bool) -> HashMap<SocketAddr, f64> {
    let rr = AtomicUsize::new(0);
    let mut counts: HashMap<SocketAddr, usize> = HashMap::new();
    for i in 0..PICKS {
        let hash = hashed.then(|| mix(i as u64 + 1));
        let (h, _) = s.pick(hash, 0, &rr).expect("a host");
        *counts.entry(h.addr()).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|(a, n)| (a, n as f64 * 100.0 / PICKS as f64))
        .collect()
}

const POLICIES: [LbPolicy; 5] = [
    LbPolicy::RoundRobin,
    LbPolicy::Random,
    LbPolicy::LeastRequest {
        choice_count: 2,
        active_request_bias: 1.0,
    },
    LbPolicy::RingHash {
        minimum_ring_size: 1024,
        maximum_ring_size: 8 * 1024 * 1024,
    },
    LbPolicy::Maglev { table_size: 65_537 },
];

#[test]
fn every_balancer_honours_weights_within_three_points() {
    let hosts = [host(1, 1, 0), host(2, 2, 0), host(3, 3, 0), host(4, 4, 0)];
    for policy in POLICIES {
        let s = state(&hosts, policy);
        let got = shares(&s, policy.is_hash());
        for h in &hosts {
            let want = f64::from(h.weight()) * 10.0;
            let share = got.get(&h.addr()).copied().unwrap_or(0.0);
            assert!(
                (share - want).abs() <= 3.0,
                "{policy:?}: host weight {} got {share:.1}%, want {want}%",
                h.weight()
            );
        }
    }
}

#[test]
fn equal_weights_spread_evenly() {
    let hosts: Vec<_> = (0..5).map(|i| host(i, 1, 0)).collect();
    for policy in POLICIES {
        let got = shares(&state(&hosts, policy), policy.is_hash());
        for h in &hosts {
            let share = got.get(&h.addr()).copied().unwrap_or(0.0);
            assert!((share - 20.0).abs() <= 3.0, "{policy:?}: {share:.1}%");
        }
    }
}

#[test]
fn hash_balancers_are_consistent_and_move_about_one_nth() {
    const N: u32 = 10;
    for policy in [POLICIES[3], POLICIES[4]] {
        let hosts: Vec<_> = (0..N).map(|i| host(i, 1, 0)).collect();
        let before = state(&hosts, policy);
        let rr = AtomicUsize::new(0);
        let keys: Vec<u64> = (0..PICKS as u64).map(|k| mix(k ^ 0xabcdef)).collect();
        let first: Vec<SocketAddr> = keys
            .iter()
            .map(|&k| before.pick(Some(k), 0, &rr).expect("host").0.addr())
            .collect();
        // The same key lands on the same host every time.
        for (k, a) in keys.iter().zip(&first).take(500) {
            assert_eq!(before.pick(Some(*k), 0, &rr).expect("host").0.addr(), *a);
        }
        let removed = hosts[3].addr();
        let fewer: Vec<_> = hosts
            .iter()
            .filter(|h| h.addr() != removed)
            .cloned()
            .collect();
        let after = state(&fewer, policy);
        let mut moved = 0;
        for (k, a) in keys.iter().zip(&first) {
            let now = after.pick(Some(*k), 0, &rr).expect("host").0.addr();
            if *a != removed && now != *a {
                moved += 1;
            }
        }
        let on_removed = first.iter().filter(|a| **a == removed).count();
        // Keys of the removed host must move; a few others move too, as the
        // survivors take over the removed host's share of the ring or table
        // (Envoy keeps the ring size, so each survivor gets more entries).
        let one_nth = 100.0 / f64::from(N);
        let moved_pct = moved as f64 * 100.0 / PICKS as f64;
        assert!(
            moved_pct <= one_nth * 0.6,
            "{policy:?}: {moved_pct:.1}% of keys on surviving hosts moved"
        );
        let total_moved = (moved + on_removed) as f64 * 100.0 / PICKS as f64;
        assert!(
            total_moved <= one_nth * 2.0,
            "{policy:?}: {total_moved:.1}% moved in all"
        );
        eprintln!("{policy:?}: removing 1 of {N} hosts moved {total_moved:.1}% of keys");
    }
}

#[test]
fn least_request_prefers_the_less_loaded_host() {
    let hosts = [host(1, 1, 0), host(2, 1, 0)];
    let s = state(
        &hosts,
        LbPolicy::LeastRequest {
            choice_count: 2,
            active_request_bias: 1.0,
        },
    );
    hosts[0]
        .counters
        .rq_active
        .store(10, std::sync::atomic::Ordering::Relaxed);
    let got = shares(&s, false);
    let busy = got.get(&hosts[0].addr()).copied().unwrap_or(0.0);
    // Power of two choices: the busy host wins only when drawn twice (25%).
    assert!(busy < 30.0, "busy host got {busy:.1}%");
}

#[test]
fn priority_failover_follows_overprovisioned_health() {
    // P0: 4 hosts, P1: 4 hosts.
    let p0: Vec<_> = (0..4).map(|i| host(i, 1, 0)).collect();
    let p1: Vec<_> = (10..14).map(|i| host(i, 1, 1)).collect();
    let all: Vec<_> = p0.iter().chain(&p1).cloned().collect();
    let p0_share = |s: &LbState| {
        let got = shares(s, false);
        p0.iter()
            .map(|h| got.get(&h.addr()).copied().unwrap_or(0.0))
            .sum::<f64>()
    };
    let s = state(&all, LbPolicy::RoundRobin);
    assert!((p0_share(&s) - 100.0).abs() < 0.01);
    // 3 of 4 healthy: 75% × 1.4 > 100, still all traffic on P0.
    p0[0].set_flag(FAILED_ACTIVE_HC, true);
    assert!((p0_share(&state(&all, LbPolicy::RoundRobin)) - 100.0).abs() < 0.01);
    // 2 of 4 healthy: 50% × 1.4 = 70% stays on P0.
    p0[1].set_flag(FAILED_OUTLIER, true);
    let share = p0_share(&state(&all, LbPolicy::RoundRobin));
    assert!((share - 70.0).abs() <= 3.0, "P0 got {share:.1}%");
    // Unhealthy hosts get nothing while not in panic.
    let got = shares(&state(&all, LbPolicy::Random), false);
    assert!(!got.contains_key(&p0[0].addr()) && !got.contains_key(&p0[1].addr()));
}

#[test]
fn panic_mode_uses_every_host_when_too_few_are_healthy() {
    let hosts: Vec<_> = (0..4).map(|i| host(i, 1, 0)).collect();
    for h in &hosts[..3] {
        h.set_flag(FAILED_OUTLIER, true);
    }
    // 25% healthy < 50% threshold: panic, all four hosts take traffic.
    let got = shares(&state(&hosts, LbPolicy::RoundRobin), false);
    assert_eq!(got.len(), 4, "{got:?}");
    // With the threshold at 0, panic is off: only the healthy host.
    let common = LbCommon {
        healthy_panic_threshold: 0.0,
        ..LbCommon::default()
    };
    let s = LbState::build(hosts.clone(), &LbPolicy::RoundRobin, &common);
    let got = shares(&s, false);
    assert_eq!(got.len(), 1, "{got:?}");
    // Nothing healthy and panic disabled: no host at all.
    hosts[3].set_flag(FAILED_OUTLIER, true);
    let s = LbState::build(hosts.clone(), &LbPolicy::RoundRobin, &common);
    assert!(s.pick(None, 0, &AtomicUsize::new(0)).is_none());
}

#[test]
fn locality_weights_split_traffic() {
    let mut hosts = Vec::new();
    for (i, (zone, w)) in [("a", 1u32), ("a", 1), ("b", 3)].iter().enumerate() {
        let addr: SocketAddr = format!("10.1.0.{}:80", i + 1).parse().expect("addr");
        let mut ep = Endpoint::new(addr.ip().to_string(), 80, 1);
        ep.locality.zone = (*zone).to_owned();
        ep.locality_weight = *w;
        hosts.push(Arc::new(Host::new(addr, &ep, false)));
    }
    let common = LbCommon {
        locality_weighted: true,
        ..LbCommon::default()
    };
    let s = LbState::build(hosts.clone(), &LbPolicy::RoundRobin, &common);
    let got = shares(&s, false);
    let b = got.get(&hosts[2].addr()).copied().unwrap_or(0.0);
    assert!((b - 75.0).abs() <= 3.0, "zone b got {b:.1}%");
}

#[test]
fn slow_start_ramps_a_new_host_up() {
    let slow = SlowStart {
        window: std::time::Duration::from_secs(100),
        aggression: 1.0,
        min_weight: 0.1,
    };
    let common = LbCommon {
        slow_start: Some(slow),
        ..LbCommon::default()
    };
    // The host clocks start at creation; age them instead of sleeping.
    for policy in [
        LbPolicy::RoundRobin,
        LbPolicy::LeastRequest {
            choice_count: 2,
            active_request_bias: 1.0,
        },
    ] {
        let veteran = host(1, 1, 0);
        let newcomer = host(2, 1, 0);
        // Only the old host has lived past the window; the newcomer is at
        // the 10% floor: 1 : 0.1.
        veteran.age(std::time::Duration::from_secs(200));
        let s = LbState::build(vec![veteran.clone(), newcomer.clone()], &policy, &common);
        let got = shares(&s, false);
        let n = got.get(&newcomer.addr()).copied().unwrap_or(0.0);
        assert!(
            (n - 100.0 / 11.0).abs() <= 3.0,
            "{policy:?}: newcomer got {n:.1}%"
        );
    }
    // Linear by default, `1 / aggression` as the exponent otherwise; the
    // floor; and Envoy's one-second minimum.
    let f = |secs: u64, aggression: f64| {
        SlowStart { aggression, ..slow }.factor(std::time::Duration::from_secs(secs))
    };
    assert!((f(50, 1.0) - 0.5).abs() < 1e-9);
    assert!((f(50, 2.0) - 0.5f64.sqrt()).abs() < 1e-9);
    assert!((f(0, 1.0) - 0.1).abs() < 1e-9);
    assert!((f(100, 1.0) - 1.0).abs() < 1e-9);
    assert!(
        (SlowStart {
            min_weight: 0.0,
            ..slow
        }
        .factor(std::time::Duration::ZERO)
            - 0.01)
            .abs()
            < 1e-9
    );
}
