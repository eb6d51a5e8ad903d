//! Cost of one host pick for each balancer, for 10 and 10,000 hosts.

use std::{hint::black_box, sync::Arc, time::Duration};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use strait_model::{self as model, Discovery, LbPolicy};
use strait_upstream::{ClusterRegistry, LbContext};

fn spec(policy: LbPolicy, hosts: u32, weighted: bool) -> model::Cluster {
    model::Cluster {
        name: "bench".into(),
        discovery: Discovery::Static,
        connect_timeout: Duration::from_secs(1),
        lb_policy: policy,
        endpoints: (0..hosts)
            .map(|i| {
                let w = if weighted { 1 + i % 5 } else { 1 };
                model::Endpoint::new(
                    format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255),
                    80,
                    w,
                )
            })
            .collect(),
        protocol: model::UpstreamProtocol::Http1,
        buffer_limit: 1 << 20,
        lb_common: model::LbCommon::default(),
        circuit_breakers: model::CircuitBreakers::default(),
        outlier_detection: None,
        health_checks: vec![],
        pool: model::PoolOptions::default(),
        tls: None,
        pipe: None,
        transport_socket_matches: Vec::new(),
        source_address: None,
        tcp_keepalive: None,
        filters: Vec::new(),
    }
}

fn pick(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let policies = [
        ("round_robin", LbPolicy::RoundRobin),
        ("random", LbPolicy::Random),
        (
            "least_request",
            LbPolicy::LeastRequest {
                choice_count: 2,
                active_request_bias: 1.0,
            },
        ),
        (
            "ring_hash",
            LbPolicy::RingHash {
                minimum_ring_size: 1024,
                maximum_ring_size: 8 * 1024 * 1024,
            },
        ),
        ("maglev", LbPolicy::Maglev { table_size: 65_537 }),
    ];
    let mut group = c.benchmark_group("pick");
    for hosts in [10u32, 10_000] {
        for weighted in [false, true] {
            for (name, policy) in policies {
                let registry = ClusterRegistry::new(Arc::new(metrics::NoopRecorder));
                rt.block_on(
                    registry.reconcile(&[spec(policy, hosts, weighted)], &|_| Default::default()),
                );
                let Some(cluster) = registry.get("bench") else {
                    panic!("cluster missing")
                };
                let label = format!("{name}{}", if weighted { "/weighted" } else { "" });
                let mut key = 0u64;
                group.bench_with_input(BenchmarkId::new(label, hosts), &hosts, |b, _| {
                    b.iter(|| {
                        key = key.wrapping_add(0x9e37_79b9_7f4a_7c15);
                        let ctx = LbContext {
                            hash: policy.is_hash().then_some(key),
                            avoid: &[],
                        };
                        black_box(cluster.pick_with(&ctx))
                    })
                });
            }
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20);
    targets = pick
}
criterion_main!(benches);
