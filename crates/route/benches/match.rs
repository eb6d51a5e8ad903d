//! Route matching cost against tables of Istio's shape (a sidecar's
//! outbound route configuration: one virtual host per service, eight
//! domains each, ~10 routes with prefix and header matches), at 10, 1,000
//! and 10,000 virtual hosts. Matching must stay flat as the table grows.
//!
//! `cargo bench -p strait-route --bench match -- --quick`

use std::{hint::black_box, time::Duration};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Method};
use strait_model::{
    ForwardAction, HeaderMatcher, HeaderMutations, HeaderRule, PathMatch, Route, RouteAction,
    RouteConfig, RouteMatch, StringMatch, StringPattern, VirtualHost,
};
use strait_route::{RequestView, RouteTable};

const ROUTES_PER_HOST: usize = 10;

fn service(i: usize) -> (String, String, String) {
    let name = format!("svc-{i}");
    let namespace = format!("ns-{}", i % 50);
    let ip = format!("10.{}.{}.{}", (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff);
    (name, namespace, ip)
}

fn exact_header(name: &str, value: &str) -> HeaderMatcher {
    HeaderMatcher {
        name: name.into(),
        rule: HeaderRule::String(StringMatch {
            pattern: StringPattern::Exact(value.into()),
            ignore_case: false,
        }),
        invert: false,
        treat_missing_as_empty: false,
    }
}

/// One service's virtual host: Istio's eight domains, then routes from most
/// to least specific, ending with the catch-all `/`.
fn virtual_host(i: usize) -> VirtualHost {
    let (name, ns, ip) = service(i);
    let fqdn = format!("{name}.{ns}.svc.cluster.local");
    let domains = vec![
        fqdn.clone(),
        format!("{fqdn}:9080"),
        name.clone(),
        format!("{name}:9080"),
        format!("{name}.{ns}"),
        format!("{name}.{ns}:9080"),
        ip.clone(),
        format!("{ip}:9080"),
    ];
    let to = |subset: &str| {
        RouteAction::Forward(ForwardAction::to_cluster(format!(
            "outbound|9080|{subset}|{fqdn}"
        )))
    };
    let mut routes = Vec::with_capacity(ROUTES_PER_HOST);
    for k in 0..ROUTES_PER_HOST - 2 {
        let mut matcher = RouteMatch::path(PathMatch::Prefix(format!("/api/v{k}/")));
        if k % 2 == 0 {
            matcher
                .headers
                .push(exact_header("end-user", &format!("user-{k}")));
        }
        if k == 6 && i.is_multiple_of(10) {
            // Some services use regex header matches (a tenth, as compiled
            // regexes are the heavy part of a table).
            matcher.headers.push(HeaderMatcher {
                name: "x-version".into(),
                rule: HeaderRule::String(StringMatch {
                    pattern: StringPattern::Regex("v[0-9]+(-canary)?".into()),
                    ignore_case: false,
                }),
                invert: false,
                treat_missing_as_empty: false,
            });
        }
        routes.push(Route::new(format!("r{k}"), matcher, to(&format!("v{k}"))));
    }
    routes.push(Route::new(
        "health",
        RouteMatch::path(PathMatch::Exact("/healthz".into())),
        to("health"),
    ));
    routes.push(Route::new("default", RouteMatch::default(), to("")));
    VirtualHost {
        name: format!("{fqdn}:9080"),
        domains,
        routes,
        headers: HeaderMutations::default(),
    }
}

fn table(hosts: usize) -> RouteTable {
    let mut virtual_hosts: Vec<_> = (0..hosts).map(virtual_host).collect();
    virtual_hosts.push(VirtualHost {
        name: "allow_any".into(),
        domains: vec!["*".into()],
        routes: vec![Route::new(
            "allow_any",
            RouteMatch::default(),
            RouteAction::Forward(ForwardAction::to_cluster("PassthroughCluster")),
        )],
        headers: HeaderMutations::default(),
    });
    RouteTable::compile(&RouteConfig {
        name: "9080".into(),
        virtual_hosts,
        ..RouteConfig::default()
    })
    .expect("the benchmark table compiles")
}

/// Requests spread over the table (a fixed pseudo-random set of services),
/// so that larger tables also pay their cache misses.
struct Requests {
    authorities: Vec<String>,
}

impl Requests {
    fn new(hosts: usize) -> Self {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let authorities = (0..256)
            .map(|n| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let (name, ns, ip) = service(usize::try_from(x % hosts as u64).unwrap_or(0));
                match n % 4 {
                    0 => format!("{name}.{ns}.svc.cluster.local:9080"),
                    1 => format!("{name}:9080"),
                    2 => format!("{ip}:9080"),
                    _ => name,
                }
            })
            .collect();
        Self { authorities }
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("route");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    let plain = HeaderMap::new();
    let mut user = HeaderMap::new();
    user.insert("end-user", HeaderValue::from_static("user-4"));
    user.insert("user-agent", HeaderValue::from_static("curl/8"));
    for hosts in [10, 1_000, 10_000] {
        let t = table(hosts);
        let requests = Requests::new(hosts);
        let routes = hosts * ROUTES_PER_HOST;
        let label = format!("{hosts}vh/{routes}r");
        // The catch-all route: every earlier route is tried and fails.
        group.bench_function(BenchmarkId::new("catch_all_route", &label), |b| {
            let mut n = 0usize;
            b.iter(|| {
                n = n.wrapping_add(1);
                let authority = &requests.authorities[n % requests.authorities.len()];
                let view =
                    RequestView::new(authority, "/productpage?u=normal", &Method::GET, &plain);
                black_box(
                    t.route(black_box(&view))
                        .matched()
                        .map(|m| m.route().name().len()),
                )
            });
        });
        // A header-matched route in the middle of the list.
        group.bench_function(BenchmarkId::new("header_route", &label), |b| {
            let mut n = 0usize;
            b.iter(|| {
                n = n.wrapping_add(1);
                let authority = &requests.authorities[n % requests.authorities.len()];
                let view = RequestView::new(authority, "/api/v4/reviews/1", &Method::GET, &user);
                black_box(
                    t.route(black_box(&view))
                        .matched()
                        .map(|m| m.route().name().len()),
                )
            });
        });
        // An unknown host: the `*` virtual host (Istio's allow_any).
        group.bench_function(BenchmarkId::new("unknown_host", &label), |b| {
            b.iter(|| {
                let view = RequestView::new("example.org:443", "/", &Method::GET, &plain);
                black_box(
                    t.route(black_box(&view))
                        .matched()
                        .map(|m| m.route().name().len()),
                )
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
