//! [`RouteTable`]: one `RouteConfiguration`, compiled, and the per-request
//! lookup over it.

use std::time::Duration;

use http::{HeaderMap, Method};
use strait_model::filter::FilterOverride;
use strait_model::ratelimit::RouteRateLimits;
use strait_model::{Route, RouteAction, RouteConfig, VirtualHost};

use crate::{
    RouteError,
    action::{
        self, Choice, ChosenCluster, ForwardEntry, HostRewriteOutcome, StreamDuration,
        WeightedClusterEntry,
    },
    authority::strip_port,
    domain::{DomainIndex, DomainIndexBuilder},
    headers::{HeaderMutation, apply_levels},
    matcher::{RequestView, RouteMatcher, path_without_query},
    redirect::RedirectEntry,
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
    ignore_port_in_host_matching: bool,
    headers: HeaderMutation,
    most_specific_header_mutations_wins: bool,
}

/// A compiled virtual host: its routes, in the order they are tried.
#[derive(Debug, Clone)]
pub struct VirtualHostEntry {
    name: Box<str>,
    routes: Box<[RouteEntry]>,
    headers: HeaderMutation,
}

/// A compiled route: its matcher and what to do when it matches.
#[derive(Debug, Clone)]
pub struct RouteEntry {
    name: Box<str>,
    matcher: RouteMatcher,
    action: RouteAction,
    compiled: CompiledAction,
    headers: HeaderMutation,
    /// The merged `typed_per_filter_config`, read by the HTTP filters.
    per_filter_config: Box<[FilterOverride]>,
    /// The route's and its virtual host's `rate_limits`.
    rate_limits: RouteRateLimits,
}

/// What compiling the action adds to the model's description of it.
#[derive(Debug, Clone)]
enum CompiledAction {
    Forward(ForwardEntry),
    Redirect(RedirectEntry),
    DirectResponse,
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
    table: &'t RouteTable,
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
    /// whole configuration, when more than one `*` default is given, or when
    /// a regex, header or weighted-cluster split cannot be compiled (errors
    /// name the virtual host and route). Allocates; meant for config
    /// publication, not the request path.
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
            virtual_hosts.push(VirtualHostEntry::compile(vhost, &config.name)?);
        }
        Ok(Self {
            name: config.name.as_str().into(),
            virtual_hosts: virtual_hosts.into(),
            domains: domains.build(),
            ignore_port_in_host_matching: config.ignore_port_in_host_matching,
            headers: HeaderMutation::compile(&config.headers, &|| {
                format!("route config {:?}", config.name)
            })?,
            most_specific_header_mutations_wins: config.most_specific_header_mutations_wins,
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
    /// authority has upper-case letters and is longer than any real host, or
    /// a header matcher meets a header with several values.
    pub fn route(&self, request: &RequestView<'_>) -> RouteResult<'_> {
        let Some(virtual_host) = self.virtual_host(request.authority) else {
            return RouteResult::NoVirtualHost;
        };
        match virtual_host.find_route(request) {
            Some((route, matched_len)) => RouteResult::Matched(Matched {
                table: self,
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
    /// `*suffix`, longest `prefix*`, then `*`. The port is compared too
    /// (`example.com:8080` is served only by that exact domain or a
    /// wildcard) unless the table has `ignore_port_in_host_matching`.
    pub fn virtual_host(&self, authority: &str) -> Option<&VirtualHostEntry> {
        let authority = if self.ignore_port_in_host_matching {
            strip_port(authority)
        } else {
            authority
        };
        // `DomainIndex` holds only indices of `virtual_hosts`, from `compile`.
        self.domains
            .find(authority)
            .and_then(|index| self.virtual_hosts.get(index))
    }

    /// The route configuration's own header mutations.
    pub fn headers(&self) -> &HeaderMutation {
        &self.headers
    }
}

impl VirtualHostEntry {
    fn compile(config: &VirtualHost, route_config: &str) -> Result<Self, RouteError> {
        let routes = config
            .routes
            .iter()
            .enumerate()
            .map(|(i, route)| {
                RouteEntry::compile(route, &|| {
                    format!(
                        "route config {route_config:?} virtual host {:?} route {i} ({:?})",
                        config.name, route.name
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            name: config.name.as_str().into(),
            routes,
            headers: HeaderMutation::compile(&config.headers, &|| {
                format!(
                    "route config {route_config:?} virtual host {:?}",
                    config.name
                )
            })?,
        })
    }

    /// The virtual host's own header mutations.
    pub fn headers(&self) -> &HeaderMutation {
        &self.headers
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
    fn compile(config: &Route, at: &dyn Fn() -> String) -> Result<Self, RouteError> {
        let compiled = match &config.action {
            RouteAction::Forward(forward) => {
                CompiledAction::Forward(ForwardEntry::compile(forward, at)?)
            }
            RouteAction::Redirect(redirect) => {
                CompiledAction::Redirect(RedirectEntry::compile(redirect, at)?)
            }
            RouteAction::DirectResponse { .. } => CompiledAction::DirectResponse,
        };
        Ok(Self {
            name: config.name.as_str().into(),
            matcher: RouteMatcher::compile(&config.matcher, at)?,
            action: config.action.clone(),
            compiled,
            headers: HeaderMutation::compile(&config.headers, at)?,
            per_filter_config: config.per_filter_config.clone().into(),
            rate_limits: config.rate_limits.clone(),
        })
    }

    /// The route's own header mutations.
    pub fn headers(&self) -> &HeaderMutation {
        &self.headers
    }

    /// The route's `name` (may be empty: Envoy does not require one).
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn action(&self) -> &RouteAction {
        &self.action
    }

    /// Per-filter overrides (route over virtual host over route
    /// configuration, already merged), for the HTTP filters.
    pub fn per_filter_config(&self) -> &[FilterOverride] {
        &self.per_filter_config
    }

    /// The rate-limit policies (the route's and its virtual host's), for
    /// the rate-limit filters.
    pub fn rate_limits(&self) -> &RouteRateLimits {
        &self.rate_limits
    }

    /// The effective `prefix_rewrite`. Envoy treats an empty rewrite as
    /// none, so it is `None` here too.
    pub fn prefix_rewrite(&self) -> Option<&str> {
        match &self.action {
            RouteAction::Forward(forward) => forward
                .prefix_rewrite
                .as_deref()
                .filter(|rewrite| !rewrite.is_empty()),
            RouteAction::Redirect(_) | RouteAction::DirectResponse { .. } => None,
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

    /// The `:path` to send upstream when the route rewrites it, with the
    /// query string kept as Envoy does: for `prefix_rewrite` the matched
    /// prefix (or, for `path` and `safe_regex` matches, the whole path) is
    /// replaced by the rewrite; for `regex_rewrite` every match of the
    /// pattern in the path (query excluded) is substituted. `None` when the
    /// route does not rewrite (or the regex matched nothing).
    ///
    /// `path_and_query` must be the request path this match was made
    /// against; given another, the result is unspecified (but never a
    /// panic). Allocates the new path.
    pub fn rewritten_path(&self, path_and_query: &str) -> Option<String> {
        if let CompiledAction::Forward(ForwardEntry {
            regex_rewrite: Some(rewrite),
            ..
        }) = &self.route.compiled
        {
            let path = path_without_query(path_and_query);
            let rewritten = rewrite.apply(path);
            if matches!(rewritten, std::borrow::Cow::Borrowed(_)) {
                return None;
            }
            let mut out = rewritten.into_owned();
            out.push_str(&path_and_query[path.len()..]);
            return Some(out);
        }
        let rewrite = self.route.prefix_rewrite()?;
        let rest = path_and_query.get(self.matched_len..)?;
        let mut path = String::with_capacity(rewrite.len() + rest.len());
        path.push_str(rewrite);
        path.push_str(rest);
        Some(path)
    }

    /// The cluster a forwarding route sends `request` to: its `cluster`,
    /// the first value of its `cluster_header`, or the `weighted_clusters`
    /// entry that the route's rotation (or `random_value_header`) selects.
    /// `None` for redirect and direct-response routes.
    ///
    /// Pass the same view the route was matched with. Does not allocate;
    /// call once per request (a weighted choice advances the rotation).
    pub fn cluster<'a>(&self, request: &RequestView<'a>) -> Option<ChosenCluster<'a>>
    where
        't: 'a,
    {
        match &self.route.compiled {
            CompiledAction::Forward(forward) => Some(forward.choose(request)),
            CompiledAction::Redirect(_) | CompiledAction::DirectResponse => None,
        }
    }

    /// The cluster choice of [`Matched::cluster`], detached from the
    /// request (see [`Choice`]). `None` for routes that do not forward.
    pub fn choice(&self, request: &RequestView<'_>) -> Option<Choice<'t>> {
        match &self.route.compiled {
            CompiledAction::Forward(forward) => Some(forward.choice(request)),
            CompiledAction::Redirect(_) | CompiledAction::DirectResponse => None,
        }
    }

    /// [`Matched::apply_request_headers`] for a detached [`Choice`].
    pub fn apply_request_headers_for(&self, headers: &mut HeaderMap, choice: Option<&Choice<'_>>) {
        self.apply_levels_with(headers, choice.and_then(|c| c.weighted), false);
    }

    /// [`Matched::apply_response_headers`] for a detached [`Choice`].
    pub fn apply_response_headers_for(&self, headers: &mut HeaderMap, choice: Option<&Choice<'_>>) {
        self.apply_levels_with(headers, choice.and_then(|c| c.weighted), true);
    }

    /// What to do with the upstream request's host: `host_rewrite_literal`
    /// (the chosen weighted cluster's first, then the route's),
    /// `host_rewrite_header`, `host_rewrite_path_regex`, or
    /// `auto_host_rewrite`. Allocates only for a path-regex rewrite.
    pub fn host_rewrite<'a>(
        &self,
        request: &RequestView<'a>,
        cluster: Option<&ChosenCluster<'a>>,
    ) -> HostRewriteOutcome<'a>
    where
        't: 'a,
    {
        match &self.route.compiled {
            CompiledAction::Forward(forward) => forward.host_rewrite(request, cluster),
            CompiledAction::Redirect(_) | CompiledAction::DirectResponse => {
                HostRewriteOutcome::Keep
            }
        }
    }

    /// For a redirect route, its status and `Location` (see the model's
    /// `RedirectAction`); `None` for other routes. Allocates the location.
    pub fn redirect(&self, request: &RequestView<'_>) -> Option<(u16, String)> {
        match (&self.route.compiled, &self.route.action) {
            (CompiledAction::Redirect(entry), RouteAction::Redirect(config)) => {
                Some((config.status, entry.location(request, self.matched_len)))
            }
            _ => None,
        }
    }

    /// The upstream timeout for `request`: the route's `timeout`, or for a
    /// gRPC request on a route with the deprecated `max_grpc_timeout`, the
    /// request's `grpc-timeout` adjusted as Envoy does. `None`: no timeout
    /// (also for routes that do not forward).
    pub fn upstream_timeout(&self, request: &RequestView<'_>) -> Option<Duration> {
        match &self.route.action {
            RouteAction::Forward(forward) => action::upstream_timeout(forward, request),
            RouteAction::Redirect(_) | RouteAction::DirectResponse { .. } => None,
        }
    }

    /// The stream duration limit for `request` under `max_stream_duration`
    /// (with `grpc-timeout` when `grpc_timeout_header_max` is set).
    pub fn stream_duration(&self, request: &RequestView<'_>) -> StreamDuration {
        match &self.route.action {
            RouteAction::Forward(forward) => action::stream_duration(forward, request),
            RouteAction::Redirect(_) | RouteAction::DirectResponse { .. } => {
                StreamDuration::Inherit
            }
        }
    }

    /// Applies the request header mutations of every level to the upstream
    /// request's headers: the chosen weighted cluster's, the route's, the
    /// virtual host's and the route configuration's, in that order (so the
    /// least specific wins a conflict) or the reverse with
    /// `most_specific_header_mutations_wins`.
    pub fn apply_request_headers(
        &self,
        headers: &mut HeaderMap,
        cluster: Option<&ChosenCluster<'_>>,
    ) {
        self.apply_headers(headers, cluster, false);
    }

    /// As [`Matched::apply_request_headers`], for the response (also for
    /// redirects and direct responses, as Envoy does).
    pub fn apply_response_headers(
        &self,
        headers: &mut HeaderMap,
        cluster: Option<&ChosenCluster<'_>>,
    ) {
        self.apply_headers(headers, cluster, true);
    }

    fn apply_headers(
        &self,
        headers: &mut HeaderMap,
        cluster: Option<&ChosenCluster<'_>>,
        response: bool,
    ) {
        self.apply_levels_with(headers, cluster.and_then(ChosenCluster::weighted), response);
    }

    fn apply_levels_with(
        &self,
        headers: &mut HeaderMap,
        weighted: Option<&WeightedClusterEntry>,
        response: bool,
    ) {
        let levels = [
            weighted.map(|w| w.headers()),
            Some(&self.route.headers),
            Some(&self.virtual_host.headers),
            Some(&self.table.headers),
        ];
        apply_levels(
            &levels,
            self.table.most_specific_header_mutations_wins,
            headers,
            response,
        );
    }
}

#[cfg(test)]
mod action_tests;
#[cfg(test)]
mod envoy_tests;
#[cfg(test)]
mod tests;
