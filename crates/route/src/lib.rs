//! Strait's routing engine: Envoy's `RouteConfiguration`, compiled once into a
//! [`RouteTable`] and matched per request.
//!
//! Owns virtual host selection by authority (exact, `*suffix`, `prefix*`, `*`,
//! with Envoy's precedence, optionally ignoring the port) and route matching
//! within a virtual host (first match wins) on path (`prefix`, `path`,
//! `safe_regex`, `path_separated_prefix`), headers (pseudo-headers included),
//! query parameters, gRPC and `runtime_fraction`; and what a match implies
//! for the request: the cluster (`cluster`, `cluster_header`, weighted
//! clusters), path rewrites (`prefix_rewrite`, `regex_rewrite`), host
//! rewrites, the redirect `Location`, header mutations at every level in
//! Envoy's order ([`HeaderMutation`]), and timeouts derived from
//! `grpc-timeout`. Retry, hash and mirror policies are carried by the model
//! and applied by their consumers.
//!
//! I/O-free: no async, no locks, no clocks, no randomness (the caller
//! passes each request's random value in its [`RequestView`]), no logging.
//! The one piece of state is a weighted route's rotation, an atomic counter
//! that spreads its requests over the clusters by weight. Compilation (regexes included) runs when config is published;
//! matching is the per-request hot path and does not allocate in the common
//! case. Must not depend on any Strait crate but `strait-model`, nor on
//! anything beyond `http` and `regex`.
//!
//! ```
//! use http::{HeaderMap, Method};
//! use strait_model::{
//!     ClusterSpecifier, ClusterTarget, ClusterWeight, ForwardAction, HeaderMatcher,
//!     HeaderMutations, HeaderRule, PathMatch, PathRedirect, RedirectAction, Route,
//!     RouteAction, RouteConfig, RouteMatch, StringMatch, StringPattern, VirtualHost,
//!     WeightedClusters,
//! };
//! use strait_route::{RequestView, RouteTable};
//!
//! let weight = |name: &str, weight| ClusterWeight {
//!     target: ClusterTarget::Name(name.into()),
//!     weight,
//!     headers: HeaderMutations::default(),
//!     host_rewrite_literal: None,
//! };
//! let jason = HeaderMatcher {
//!     name: "end-user".into(),
//!     rule: HeaderRule::String(StringMatch {
//!         pattern: StringPattern::Exact("jason".into()),
//!         ignore_case: false,
//!     }),
//!     invert: false,
//!     treat_missing_as_empty: false,
//! };
//! let config = RouteConfig {
//!     name: "local_route".into(),
//!     virtual_hosts: vec![VirtualHost {
//!         name: "reviews".into(),
//!         domains: vec!["reviews".into(), "*.example.com".into()],
//!         routes: vec![
//!             Route::new(
//!                 "jason",
//!                 RouteMatch { headers: vec![jason], ..RouteMatch::default() },
//!                 RouteAction::Forward(ForwardAction::to_cluster("reviews-v2")),
//!             ),
//!             Route::new(
//!                 "old",
//!                 RouteMatch::path(PathMatch::SeparatedPrefix("/old".into())),
//!                 RouteAction::Redirect(RedirectAction {
//!                     scheme: Some("https".into()),
//!                     host: None,
//!                     port: None,
//!                     path: PathRedirect::Prefix("/new".into()),
//!                     strip_query: false,
//!                     status: 301,
//!                 }),
//!             ),
//!             Route::new(
//!                 "split",
//!                 RouteMatch::path(PathMatch::Prefix("/api/".into())),
//!                 RouteAction::Forward(ForwardAction {
//!                     cluster: ClusterSpecifier::Weighted(WeightedClusters {
//!                         clusters: vec![weight("reviews-v1", 50), weight("reviews-v3", 50)],
//!                         random_value_header: None,
//!                     }),
//!                     prefix_rewrite: Some("/".into()),
//!                     ..ForwardAction::to_cluster("unused")
//!                 }),
//!             ),
//!         ],
//!         headers: HeaderMutations::default(),
//!     }],
//!     ignore_port_in_host_matching: true,
//!     ..RouteConfig::default()
//! };
//! let table = RouteTable::compile(&config)?;
//!
//! // Weighted clusters: the route's rotation spreads requests by weight.
//! let headers = HeaderMap::new();
//! let view = RequestView::new("www.Example.com", "/api/users?page=2", &Method::GET, &headers);
//! let matched = table.route(&view).matched().expect("routed");
//! assert_eq!(matched.route().name(), "split");
//! let picks: Vec<_> = (0..4)
//!     .map(|_| matched.cluster(&view).expect("forwards").name().to_owned())
//!     .collect();
//! assert_eq!(picks, ["reviews-v1", "reviews-v3", "reviews-v1", "reviews-v3"]);
//! assert_eq!(matched.rewritten_path(view.path).as_deref(), Some("/users?page=2"));
//!
//! // Header match.
//! let mut headers = HeaderMap::new();
//! headers.insert("end-user", "jason".parse()?);
//! let view = RequestView::new("reviews", "/api/x", &Method::GET, &headers);
//! let matched = table.route(&view).matched().expect("routed");
//! assert_eq!(matched.cluster(&view).expect("forwards").name(), "reviews-v2");
//!
//! // Redirect: `/old/a?q` (but not `/older`) goes to https, prefix swapped,
//! // the default http port dropped; the port is ignored to pick the host.
//! let headers = HeaderMap::new();
//! let view = RequestView::new("reviews:80", "/old/a?q", &Method::GET, &headers);
//! let matched = table.route(&view).matched().expect("routed");
//! let (status, location) = matched.redirect(&view).expect("a redirect");
//! assert_eq!((status, location.as_str()), (301, "https://reviews/new/a?q"));
//! assert!(table.find("reviews", "/older").is_none());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod action;
mod authority;
mod domain;
mod headers;
mod matcher;
mod normalize;
mod redirect;
mod table;

pub use action::{
    Choice, ChosenCluster, HostRewriteOutcome, StreamDuration, WeightedClusterEntry, grpc_timeout,
};
pub use authority::{port_of, strip_host_port, strip_port};
pub use headers::HeaderMutation;
pub use matcher::{RequestMatcher, RequestView};
pub use normalize::normalize_path;
pub use table::{Matched, RouteEntry, RouteResult, RouteTable, VirtualHostEntry};

/// Why a route configuration could not be compiled. The configuration is
/// then rejected whole (an RDS NACK) and the previous table stays in use.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// Envoy requires at least one domain per virtual host.
    #[error("route config {route_config:?}: virtual host {virtual_host:?} has no domains")]
    NoDomains {
        route_config: String,
        virtual_host: String,
    },
    /// A domain (compared case-insensitively) or the `*` default appears
    /// twice in one route configuration.
    #[error(
        "route config {route_config:?}: domain {domain:?} of virtual host {virtual_host:?} \
         is already served by virtual host {first_virtual_host:?}; domains must be unique"
    )]
    DuplicateDomain {
        route_config: String,
        /// Lower-cased.
        domain: String,
        virtual_host: String,
        first_virtual_host: String,
    },
    /// A `safe_regex` (match or rewrite) that does not compile.
    #[error("{at}: invalid regex {pattern:?}: {message}")]
    InvalidRegex {
        /// Which route configuration, virtual host and route.
        at: String,
        pattern: String,
        message: String,
    },
    /// A header name or value that HTTP cannot carry.
    #[error("{at}: invalid header {name:?}")]
    InvalidHeader { at: String, name: String },
    /// `weighted_clusters` whose weights sum to zero.
    #[error("{at}: weighted cluster weights must sum to more than 0")]
    ZeroWeights { at: String },
    /// A `runtime_fraction` with a zero denominator.
    #[error("{at}: runtime_fraction denominator must not be 0")]
    InvalidFraction { at: String },
}
