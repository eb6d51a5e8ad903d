//! Strait's routing engine: Envoy's `RouteConfiguration`, compiled once into a
//! [`RouteTable`] and matched per request.
//!
//! Owns virtual host selection by authority (exact, `*suffix`, `prefix*`, `*`,
//! with Envoy's precedence) and route matching within a virtual host (first
//! match wins), plus what a match implies for the request (`prefix_rewrite`).
//! Header, query-parameter and regex matchers, weighted clusters, redirects,
//! and retry and timeout policy grow here too.
//!
//! Pure and I/O-free: no async, no locks, no clocks, no logging. Compilation
//! runs when config is published; matching is the per-request hot path and
//! does not allocate in the common case. Must not depend on any Strait crate
//! but `strait-config`, nor on anything beyond `http` for request types.
//!
//! ```
//! use strait_config::model::{
//!     ForwardAction, PathMatch, Route, RouteAction, RouteConfig, RouteMatch, VirtualHost,
//! };
//! use strait_route::RouteTable;
//!
//! let config = RouteConfig {
//!     name: "local_route".into(),
//!     virtual_hosts: vec![VirtualHost {
//!         name: "backend".into(),
//!         domains: vec!["*.example.com".into()],
//!         routes: vec![Route {
//!             name: "api".into(),
//!             matcher: RouteMatch { path: PathMatch::Prefix("/api/".into()), case_sensitive: true },
//!             action: RouteAction::Forward(ForwardAction {
//!                 cluster: "api".into(),
//!                 timeout: None,
//!                 prefix_rewrite: Some("/".into()),
//!             }),
//!         }],
//!     }],
//! };
//! let table = RouteTable::compile(&config)?;
//! let matched = table.find("www.Example.com", "/api/users?page=2").expect("routed");
//! assert_eq!(matched.virtual_host().name(), "backend");
//! assert_eq!(matched.rewritten_path("/api/users?page=2").as_deref(), Some("/users?page=2"));
//! # Ok::<(), strait_route::RouteError>(())
//! ```

mod domain;
mod matcher;
mod table;

pub use matcher::RequestView;
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
}
