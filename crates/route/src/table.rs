//! [`RouteTable`]: one `RouteConfiguration`, compiled, and the per-request
//! lookup over it.

use http::{HeaderMap, Method};
use strait_config::model::{Route, RouteAction, RouteConfig, VirtualHost};

use crate::{
    RouteError,
    domain::{DomainIndex, DomainIndexBuilder},
    matcher::{RequestView, RouteMatcher, path_without_query},
};

/// A compiled `RouteConfiguration`: built once when config is published,
/// then shared (typically in an `Arc` inside the snapshot) and matched
/// concurrently by every request, without locks.
///
/// Immutable after [`RouteTable::compile`]; `Send + Sync`.
#[derive(Debug, Clone)]
pub struct RouteTable {
    name: Box<str>,
    virtual_hosts: Box<[VirtualHostEntry]>,
    domains: DomainIndex,
}

/// A compiled virtual host: its routes, in the order they are tried.
#[derive(Debug, Clone)]
pub struct VirtualHostEntry {
    name: Box<str>,
    routes: Box<[RouteEntry]>,
}

/// A compiled route: its matcher and what to do when it matches.
#[derive(Debug, Clone)]
pub struct RouteEntry {
    name: Box<str>,
    matcher: RouteMatcher,
    action: RouteAction,
}

/// The outcome of routing one request.
///
/// Envoy answers both misses with 404 and response flag `NR`, but they are
/// told apart so that they can be counted apart.
#[derive(Debug, Clone, Copy)]
pub enum RouteResult<'t> {
    /// No virtual host serves the request's authority.
    NoVirtualHost,
    /// A virtual host serves the authority but none of its routes matched.
    NoRoute(&'t VirtualHostEntry),
    Matched(Matched<'t>),
}

/// A route that matched a request, with what its rewrites need to know.
///
/// Borrows only the table, not the request, so the caller can go on to
/// change the request (rewrite its path, add headers) while holding it.
#[derive(Debug, Clone, Copy)]
pub struct Matched<'t> {
    virtual_host: &'t VirtualHostEntry,
    route: &'t RouteEntry,
    /// Bytes at the start of the request's `:path` consumed by the path
    /// condition: what `prefix_rewrite` replaces.
    matched_len: usize,
}

impl RouteTable {
    /// Compiles a route configuration.
    ///
    /// Fails, as Envoy's RDS would NACK, when a virtual host has no domains,
    /// when a domain (compared case-insensitively) is listed twice in the
    /// whole configuration, or when more than one `*` default is given.
    /// Allocates; meant for config publication, not the request path.
    pub fn compile(config: &RouteConfig) -> Result<Self, RouteError> {
        let mut domains = DomainIndexBuilder::default();
        let mut virtual_hosts = Vec::with_capacity(config.virtual_hosts.len());
        for (index, vhost) in config.virtual_hosts.iter().enumerate() {
            if vhost.domains.is_empty() {
                return Err(RouteError::NoDomains {
                    route_config: config.name.clone(),
                    virtual_host: vhost.name.clone(),
                });
            }
            for domain in &vhost.domains {
                domains.insert(domain, index).map_err(|first| {
                    RouteError::DuplicateDomain {
                        route_config: config.name.clone(),
                        domain: domain.to_ascii_lowercase(),
                        virtual_host: vhost.name.clone(),
                        // The builder only hands back indices it was given,
                        // all of which index `config.virtual_hosts`.
                        first_virtual_host: config.virtual_hosts[first].name.clone(),
                    }
                })?;
            }
            virtual_hosts.push(VirtualHostEntry::compile(vhost)?);
        }
        Ok(Self {
            name: config.name.as_str().into(),
            virtual_hosts: virtual_hosts.into(),
            domains: domains.build(),
        })
    }

    /// The route configuration's `name`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Every virtual host, in configuration order.
    pub fn virtual_hosts(&self) -> &[VirtualHostEntry] {
        &self.virtual_hosts
    }

    /// Routes a request: selects the virtual host by authority, then takes
    /// the first of its routes that matches.
    ///
    /// Pure and lock-free; does not block. Allocates nothing unless the
    /// authority has upper-case letters and is longer than any real host.
    pub fn route(&self, request: &RequestView<'_>) -> RouteResult<'_> {
        let Some(virtual_host) = self.virtual_host(request.authority) else {
            return RouteResult::NoVirtualHost;
        };
        match virtual_host.find_route(request) {
            Some((route, matched_len)) => RouteResult::Matched(Matched {
                virtual_host,
                route,
                matched_len,
            }),
            None => RouteResult::NoRoute(virtual_host),
        }
    }

    /// Routes by authority and `:path` alone, as a `GET` with no headers.
    ///
    /// For callers without a request at hand (tests, `strait check`, admin
    /// tooling); the data path uses [`RouteTable::route`], which will also
    /// see headers once routes can match on them.
    pub fn find(&self, authority: &str, path_and_query: &str) -> Option<Matched<'_>> {
        let headers = HeaderMap::new();
        let request = RequestView::new(authority, path_and_query, &Method::GET, &headers);
        self.route(&request).matched()
    }

    /// The virtual host serving `authority` (port included when present),
    /// case-insensitively, with Envoy's precedence: exact name, longest
    /// `*suffix`, longest `prefix*`, then `*`. A port is never stripped, so
    /// `example.com:8080` is served only by that exact domain or a wildcard.
    pub fn virtual_host(&self, authority: &str) -> Option<&VirtualHostEntry> {
        // `DomainIndex` holds only indices of `virtual_hosts`, from `compile`.
        self.domains
            .find(authority)
            .and_then(|index| self.virtual_hosts.get(index))
    }
}

impl VirtualHostEntry {
    fn compile(config: &VirtualHost) -> Result<Self, RouteError> {
        let routes = config
            .routes
            .iter()
            .map(RouteEntry::compile)
            .collect::<Result<_, _>>()?;
        Ok(Self {
            name: config.name.as_str().into(),
            routes,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The routes, in the order they are tried.
    pub fn routes(&self) -> &[RouteEntry] {
        &self.routes
    }

    /// The first route that matches, and how much of the path it consumed.
    fn find_route(&self, request: &RequestView<'_>) -> Option<(&RouteEntry, usize)> {
        let path = path_without_query(request.path);
        self.routes.iter().find_map(|route| {
            route
                .matcher
                .matches(request, path)
                .map(|matched_len| (route, matched_len))
        })
    }
}

impl RouteEntry {
    fn compile(config: &Route) -> Result<Self, RouteError> {
        Ok(Self {
            name: config.name.as_str().into(),
            matcher: RouteMatcher::compile(&config.matcher)?,
            action: config.action.clone(),
        })
    }

    /// The route's `name` (may be empty: Envoy does not require one).
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn action(&self) -> &RouteAction {
        &self.action
    }

    /// The effective `prefix_rewrite`. Envoy treats an empty rewrite as
    /// none, so it is `None` here too.
    pub fn prefix_rewrite(&self) -> Option<&str> {
        match &self.action {
            RouteAction::Forward(forward) => forward
                .prefix_rewrite
                .as_deref()
                .filter(|rewrite| !rewrite.is_empty()),
            RouteAction::DirectResponse { .. } => None,
        }
    }
}

impl<'t> RouteResult<'t> {
    /// The matched route, if any.
    pub fn matched(self) -> Option<Matched<'t>> {
        match self {
            Self::Matched(matched) => Some(matched),
            Self::NoVirtualHost | Self::NoRoute(_) => None,
        }
    }

    /// The virtual host that was selected, whether or not a route matched.
    pub fn virtual_host(&self) -> Option<&'t VirtualHostEntry> {
        match self {
            Self::NoVirtualHost => None,
            Self::NoRoute(virtual_host) => Some(virtual_host),
            Self::Matched(matched) => Some(matched.virtual_host),
        }
    }
}

impl<'t> Matched<'t> {
    pub fn virtual_host(&self) -> &'t VirtualHostEntry {
        self.virtual_host
    }

    pub fn route(&self) -> &'t RouteEntry {
        self.route
    }

    pub fn action(&self) -> &'t RouteAction {
        &self.route.action
    }

    /// The `:path` to send upstream when the route has a `prefix_rewrite`:
    /// the matched prefix (or, for an exact `path` match, the whole path) is
    /// replaced by the rewrite and the query string is kept, as Envoy does.
    /// `None` when the route does not rewrite.
    ///
    /// `path_and_query` must be the request path this match was made
    /// against; given another, the result is unspecified (but never a
    /// panic). Allocates the new path.
    pub fn rewritten_path(&self, path_and_query: &str) -> Option<String> {
        let rewrite = self.route.prefix_rewrite()?;
        let rest = path_and_query.get(self.matched_len..)?;
        let mut path = String::with_capacity(rewrite.len() + rest.len());
        path.push_str(rewrite);
        path.push_str(rest);
        Some(path)
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use strait_config::model::{ForwardAction, PathMatch, RouteMatch};

    use super::*;

    fn forward(cluster: &str, prefix_rewrite: Option<&str>) -> RouteAction {
        RouteAction::Forward(ForwardAction {
            cluster: cluster.to_owned(),
            timeout: Some(Duration::from_secs(15)),
            prefix_rewrite: prefix_rewrite.map(str::to_owned),
        })
    }

    fn route(name: &str, path: PathMatch, case_sensitive: bool, action: RouteAction) -> Route {
        Route {
            name: name.to_owned(),
            matcher: RouteMatch {
                path,
                case_sensitive,
            },
            action,
        }
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
        }
    }

    fn table(virtual_hosts: Vec<VirtualHost>) -> RouteTable {
        RouteTable::compile(&RouteConfig {
            name: "local_route".to_owned(),
            virtual_hosts,
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
}
