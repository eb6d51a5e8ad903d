//! Virtual host selection, path matching and rewrites.

use std::{sync::Arc, time::Duration};

use strait_model::{ForwardAction, HeaderMutations, PathMatch, RouteMatch};

use super::*;

fn forward(cluster: &str, prefix_rewrite: Option<&str>) -> RouteAction {
    RouteAction::Forward(ForwardAction {
        timeout: Some(Duration::from_secs(15)),
        prefix_rewrite: prefix_rewrite.map(str::to_owned),
        ..ForwardAction::to_cluster(cluster)
    })
}

fn route(name: &str, path: PathMatch, case_sensitive: bool, action: RouteAction) -> Route {
    Route::new(
        name,
        RouteMatch {
            case_sensitive,
            ..RouteMatch::path(path)
        },
        action,
    )
}

/// A route to a cluster named after the route.
fn to(name: &str, path: PathMatch) -> Route {
    route(name, path, true, forward(name, None))
}

fn prefix(p: &str) -> PathMatch {
    PathMatch::Prefix(p.to_owned())
}

fn exact(p: &str) -> PathMatch {
    PathMatch::Exact(p.to_owned())
}

fn vhost(name: &str, domains: &[&str], routes: Vec<Route>) -> VirtualHost {
    VirtualHost {
        name: name.to_owned(),
        domains: domains.iter().map(|d| (*d).to_owned()).collect(),
        routes,
        headers: HeaderMutations::default(),
    }
}

fn table(virtual_hosts: Vec<VirtualHost>) -> RouteTable {
    RouteTable::compile(&RouteConfig {
        name: "local_route".to_owned(),
        virtual_hosts,
        ..RouteConfig::default()
    })
    .expect("compiles")
}

/// `(virtual host, route)` names of the match, or why there is none.
type Outcome = Result<(String, String), String>;

fn outcome(table: &RouteTable, authority: &str, path: &str) -> Outcome {
    let headers = HeaderMap::new();
    let request = RequestView::new(authority, path, &Method::GET, &headers);
    match table.route(&request) {
        RouteResult::NoVirtualHost => Err("no virtual host".to_owned()),
        RouteResult::NoRoute(vhost) => Err(format!("no route in {}", vhost.name())),
        RouteResult::Matched(m) => Ok((
            m.virtual_host().name().to_owned(),
            m.route().name().to_owned(),
        )),
    }
}

#[test]
fn selects_virtual_host_then_route() {
    let t = table(vec![
        vhost(
            "api",
            &["api.example.com", "api.example.com:8080"],
            vec![
                to("health", exact("/healthz")),
                to("v1", prefix("/v1/")),
                to("v1-exact-never", exact("/v1/users")),
            ],
        ),
        vhost("wild", &["*.example.com"], vec![to("all", prefix("/"))]),
        vhost("web", &["web.*"], vec![to("root", exact("/"))]),
        vhost("fallback", &["*"], vec![to("any", prefix(""))]),
    ]);
    let ok = |v: &str, r: &str| Ok((v.to_owned(), r.to_owned()));
    let cases: &[(&str, &str, Outcome)] = &[
        ("api.example.com", "/healthz", ok("api", "health")),
        ("API.Example.COM", "/healthz", ok("api", "health")),
        ("api.example.com:8080", "/v1/x", ok("api", "v1")),
        ("api.example.com", "/healthz?verbose=1", ok("api", "health")),
        (
            "api.example.com",
            "/healthz/",
            Err("no route in api".into()),
        ),
        ("api.example.com", "/v2/x", Err("no route in api".into())),
        // First match wins: the earlier prefix shadows the exact route.
        ("api.example.com", "/v1/users", ok("api", "v1")),
        ("api.example.com", "/v1?/v1/", Err("no route in api".into())),
        ("x.example.com", "/", ok("wild", "all")),
        ("api.example.com:9090", "/v1/x", ok("fallback", "any")),
        ("web.example.org", "/", ok("web", "root")),
        ("web.example.org", "/?a=b", ok("web", "root")),
        (
            "web.example.org",
            "/index.html",
            Err("no route in web".into()),
        ),
        ("web.example.com", "/", ok("wild", "all")),
        ("elsewhere", "/anything", ok("fallback", "any")),
        ("elsewhere", "", Err("no route in fallback".into())),
    ];
    for (authority, path, want) in cases {
        assert_eq!(&outcome(&t, authority, path), want, "{authority} {path}");
    }
}

#[test]
fn no_virtual_host_without_default() {
    let t = table(vec![vhost("only", &["only.example.com"], vec![])]);
    assert_eq!(
        outcome(&t, "other.example.com", "/"),
        Err("no virtual host".into())
    );
    assert_eq!(
        outcome(&t, "only.example.com", "/"),
        Err("no route in only".into())
    );
    let empty = table(vec![]);
    assert_eq!(outcome(&empty, "a", "/"), Err("no virtual host".into()));
    assert!(empty.find("a", "/").is_none());
}

#[test]
fn case_insensitive_routes() {
    let t = table(vec![vhost(
        "v",
        &["*"],
        vec![
            route("p", prefix("/Api/"), false, forward("p", None)),
            route("e", exact("/Exact"), false, forward("e", None)),
            route("strict", exact("/Strict"), true, forward("s", None)),
        ],
    )]);
    let names = |path: &str| t.find("h", path).map(|m| m.route().name().to_owned());
    let cases = [
        ("/api/x", Some("p")),
        ("/API/X", Some("p")),
        ("/eXaCt", Some("e")),
        ("/exact?Q=1", Some("e")),
        ("/Strict", Some("strict")),
        ("/strict", None),
    ];
    for (path, want) in cases {
        assert_eq!(names(path).as_deref(), want, "{path}");
    }
}

#[test]
fn prefix_rewrite_keeps_the_query() {
    let t = table(vec![vhost(
        "v",
        &["*"],
        vec![
            route("swap", prefix("/old/"), true, forward("c", Some("/new/"))),
            route("strip", prefix("/strip"), true, forward("c", Some("/"))),
            route("ci", prefix("/CI/"), false, forward("c", Some("/ci-v2/"))),
            route(
                "exact",
                exact("/login"),
                true,
                forward("c", Some("/auth/login")),
            ),
            route("empty", prefix("/empty/"), true, forward("c", Some(""))),
            route("none", prefix("/none/"), true, forward("c", None)),
            route(
                "direct",
                prefix("/direct"),
                true,
                RouteAction::DirectResponse {
                    status: 200,
                    body: None,
                },
            ),
        ],
    )]);
    let cases = [
        ("/old/a/b?x=1&y=2", Some("/new/a/b?x=1&y=2")),
        ("/old/", Some("/new/")),
        ("/strip/rest?q", Some("//rest?q")),
        ("/stripped", Some("/ped")),
        ("/ci/Path?K=V", Some("/ci-v2/Path?K=V")),
        ("/login", Some("/auth/login")),
        ("/login?next=/home", Some("/auth/login?next=/home")),
        ("/empty/x?q", None),
        ("/none/x?q", None),
        ("/direct?q", None),
    ];
    for (path, want) in cases {
        let matched = t.find("h", path).expect("a route matches");
        assert_eq!(matched.rewritten_path(path).as_deref(), want, "{path}");
    }
}

#[test]
fn rewrite_with_a_foreign_path_does_not_panic() {
    let t = table(vec![vhost(
        "v",
        &["*"],
        vec![route("r", prefix("/long/"), true, forward("c", Some("/")))],
    )]);
    let matched = t.find("h", "/long/x").expect("matches");
    assert_eq!(matched.rewritten_path("/"), None);
    assert_eq!(matched.rewritten_path("/é"), None);
}

#[test]
fn exposes_actions_and_names() {
    let t = table(vec![vhost("v", &["*"], vec![to("r", prefix("/"))])]);
    assert_eq!(t.name(), "local_route");
    assert_eq!(t.virtual_hosts().len(), 1);
    assert_eq!(t.virtual_hosts()[0].routes().len(), 1);
    let headers = HeaderMap::new();
    let result = t.route(&RequestView::new("h", "/x", &Method::POST, &headers));
    assert_eq!(result.virtual_host().map(VirtualHostEntry::name), Some("v"));
    let matched = result.matched().expect("matches");
    assert_eq!(matched.action(), &forward("r", None));
    assert_eq!(matched.route().prefix_rewrite(), None);
}

#[test]
fn compile_errors() {
    let compile = |virtual_hosts| {
        RouteTable::compile(&RouteConfig {
            name: "rc".to_owned(),
            virtual_hosts,
            ..RouteConfig::default()
        })
    };
    let err = compile(vec![
        vhost("a", &["x.com"], vec![]),
        vhost("b", &["X.COM"], vec![]),
    ])
    .expect_err("duplicate exact domain");
    assert!(
        matches!(&err, RouteError::DuplicateDomain { route_config, domain, virtual_host, first_virtual_host }
            if route_config == "rc" && domain == "x.com" && virtual_host == "b" && first_virtual_host == "a"),
        "{err:?}"
    );
    assert!(err.to_string().contains("x.com"), "{err}");

    let err = compile(vec![vhost("a", &["*.x.com", "*.x.com"], vec![])])
        .expect_err("duplicate within one virtual host");
    assert!(
        matches!(&err, RouteError::DuplicateDomain { virtual_host, first_virtual_host, .. }
            if virtual_host == "a" && first_virtual_host == "a"),
        "{err:?}"
    );

    let err = compile(vec![vhost("a", &["*"], vec![]), vhost("b", &["*"], vec![])])
        .expect_err("two defaults");
    assert!(matches!(err, RouteError::DuplicateDomain { .. }), "{err:?}");

    let err = compile(vec![vhost("a", &[], vec![])]).expect_err("no domains");
    assert!(
        matches!(&err, RouteError::NoDomains { virtual_host, .. } if virtual_host == "a"),
        "{err:?}"
    );

    // Same literal as different kinds of pattern is not a duplicate.
    compile(vec![
        vhost("a", &["x.com"], vec![]),
        vhost("b", &["*x.com"], vec![]),
        vhost("c", &["x.com*"], vec![]),
    ])
    .expect("distinct patterns");
}

#[test]
fn shared_across_threads() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<RouteTable>();

    let t = Arc::new(table(vec![
        vhost("a", &["a.com"], vec![to("a", prefix("/"))]),
        vhost("d", &["*"], vec![to("d", prefix("/"))]),
    ]));
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let t = Arc::clone(&t);
            std::thread::spawn(move || {
                let (host, want) = if i % 2 == 0 {
                    ("a.com", "a")
                } else {
                    ("b.com", "d")
                };
                (0..1000)
                    .filter(|_| t.find(host, "/x").map(|m| m.route().name()) == Some(want))
                    .count()
            })
        })
        .collect();
    for handle in handles {
        assert_eq!(handle.join().expect("no panic"), 1000);
    }
}

#[test]
fn ten_thousand_virtual_hosts() {
    const N: usize = 10_000;
    let mut vhosts: Vec<_> = (0..N)
        .map(|i| {
            let name = format!("svc-{i}.ns.svc.cluster.local");
            let with_port = format!("{name}:8080");
            let suffix_wildcard = format!("*.tenant-{i}.example.com");
            let prefix_wildcard = format!("app-{i}.*");
            vhost(
                &format!("vh-{i}"),
                &[&name, &with_port, &suffix_wildcard, &prefix_wildcard],
                vec![to(&format!("r-{i}"), prefix("/"))],
            )
        })
        .collect();
    vhosts.push(vhost("catch-all", &["*"], vec![to("default", prefix("/"))]));
    let t = table(vhosts);
    assert_eq!(t.virtual_hosts().len(), N + 1);

    let vhost_of = |authority: &str| {
        t.virtual_host(authority)
            .map(|v| v.name().to_owned())
            .unwrap_or_default()
    };
    for i in (0..N).step_by(97).chain([N - 1]) {
        let want = format!("vh-{i}");
        assert_eq!(vhost_of(&format!("svc-{i}.ns.svc.cluster.local")), want);
        assert_eq!(
            vhost_of(&format!("SVC-{i}.ns.svc.cluster.local:8080")),
            want
        );
        assert_eq!(vhost_of(&format!("x.y.tenant-{i}.example.com")), want);
        assert_eq!(vhost_of(&format!("app-{i}.anything")), want);
        assert_eq!(
            vhost_of(&format!("svc-{i}.ns.svc.cluster.local:9090")),
            "catch-all"
        );
        assert_eq!(vhost_of(&format!("tenant-{i}.example.com")), "catch-all");
        let matched = t
            .find(&format!("a.tenant-{i}.example.com"), "/p")
            .expect("routes");
        assert_eq!(matched.route().name(), format!("r-{i}"));
    }
    assert_eq!(vhost_of("tenant-10000.example.com"), "catch-all");
    assert_eq!(vhost_of("x.tenant-10000.example.com"), "catch-all");
}
