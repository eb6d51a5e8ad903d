//! RBAC with 50 Istio-shaped policies (the bar: at most 1 µs per
//! request). Each policy is what Istio renders for an AuthorizationPolicy
//! rule: `and_rules` of `or_rules` (methods, path prefixes), `and_ids` of
//! `or_ids` (SPIFFE principals, a JWT claim in dynamic metadata). The
//! measured request matches none (ALLOW then walks all 50 and denies), the
//! worst case; one that matches the last policy is measured too. Each is
//! measured twice: the plain tree walk (`evaluate`, per-route rules) and
//! the filters' compiled rules (`CompiledRules`: path guards skip the
//! policies a request cannot match).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use strait_http::DynamicMetadata;
use strait_model::{
    policy::{HeaderCondition, HeaderConditionKind, ValueMatch, ValueMatcher},
    rbac::{Action, MetadataMatcher, MetadataValue, Permission, Policy, Principal, Rules},
};
use strait_rbac::{CompiledRules, Input, evaluate};
use strait_tls::PeerIdentity;

fn m(kind: ValueMatch) -> ValueMatcher {
    ValueMatcher {
        kind,
        ignore_case: false,
    }
}

fn istio_policy(i: usize) -> Policy {
    let method = |v: &str| {
        Permission::Header(HeaderCondition {
            name: ":method".into(),
            kind: HeaderConditionKind::String(m(ValueMatch::Exact(v.into()))),
            invert: false,
            missing_as_empty: false,
        })
    };
    let path = |p: String| Permission::UrlPath(m(ValueMatch::Prefix(p)));
    let principal = |sa: String| {
        Principal::Authenticated(Some(m(ValueMatch::Exact(format!(
            "spiffe://cluster.local/ns/ns{i}/sa/{sa}"
        )))))
    };
    Policy {
        name: format!("ns[ns{i}]-policy[policy{i}]-rule[0]"),
        permissions: vec![Permission::And(vec![
            Permission::Or(vec![method("GET"), method("HEAD")]),
            Permission::Or(vec![
                path(format!("/api/v{i}/")),
                path(format!("/status/{i}")),
            ]),
        ])],
        principals: vec![Principal::And(vec![
            Principal::Or(vec![
                principal(format!("client{i}")),
                principal("admin".into()),
            ]),
            Principal::Or(vec![Principal::Metadata(MetadataMatcher {
                filter: "envoy.filters.http.jwt_authn".into(),
                path: vec!["payload".into(), "groups".into()],
                value: MetadataValue::ListOneOf(Box::new(MetadataValue::String(m(
                    ValueMatch::Exact(format!("group{i}")),
                )))),
                invert: false,
            })]),
        ])],
    }
}

fn bench(c: &mut Criterion) {
    let mut policies: Vec<Policy> = (0..50).map(istio_policy).collect();
    policies.sort_by(|a, b| a.name.cmp(&b.name));
    let rules = Rules {
        action: Action::Allow,
        policies,
    };
    let cert = PeerIdentity {
        uri_sans: vec!["spiffe://cluster.local/ns/ns49/sa/client49".into()].into(),
        dns_sans: Box::default(),
        subject: Box::default(),
    };
    let mut md = DynamicMetadata::default();
    md.set(
        "envoy.filters.http.jwt_authn",
        "payload",
        json!({"iss": "https://issuer", "groups": ["group49"]}),
    );
    let input = |parts| Input {
        request: Some(parts),
        peer: SocketAddr::from(([10, 1, 2, 3], 41000)),
        local: SocketAddr::from(([10, 1, 2, 4], 8080)),
        remote: IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)),
        tls: true,
        server_name: None,
        peer_cert: Some(&cert),
        metadata: Some(&md),
    };
    let head = |uri: &str| {
        http::Request::builder()
            .method("GET")
            .uri(uri)
            .header("user-agent", "bench")
            .body(())
            .expect("request")
            .into_parts()
            .0
    };
    // Matches each policy's methods but no path: every permission is
    // tried, every principal skipped.
    let miss = head("/api/none/items");
    let miss_in = input(&miss);
    assert!(!evaluate(&rules, &miss_in).allowed);
    c.bench_function("rbac_50_istio_policies_no_match", |b| {
        b.iter(|| evaluate(std::hint::black_box(&rules), std::hint::black_box(&miss_in)))
    });
    let hit = head("/api/v49/items");
    let hit_in = input(&hit);
    assert!(evaluate(&rules, &hit_in).allowed);
    c.bench_function("rbac_50_istio_policies_last_matches", |b| {
        b.iter(|| evaluate(std::hint::black_box(&rules), std::hint::black_box(&hit_in)))
    });
    // What the filters run: the same rules with their path guards.
    let compiled = CompiledRules::new(rules.clone());
    assert_eq!(compiled.evaluate(&miss_in), evaluate(&rules, &miss_in));
    assert_eq!(compiled.evaluate(&hit_in), evaluate(&rules, &hit_in));
    c.bench_function("rbac_50_istio_policies_no_match_compiled", |b| {
        b.iter(|| std::hint::black_box(&compiled).evaluate(std::hint::black_box(&miss_in)))
    });
    c.bench_function("rbac_50_istio_policies_last_matches_compiled", |b| {
        b.iter(|| std::hint::black_box(&compiled).evaluate(std::hint::black_box(&hit_in)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
