//! The HTTP filter chain: the connection manager's `http_filters` as values
//! behind [`HttpFilter`], run around the router.
//!
//! Each request runs the decode step of every enabled filter in order on
//! its head; a filter may change the head, answer the request itself
//! ([`Decision::Respond`], through the one local-reply path) or pause it for
//! I/O ([`Decision::Pause`]: the request waits, the worker does not). The
//! response head then passes back through the encode step of the filters
//! whose decode step ran, in reverse order, as Envoy runs encoders.
//!
//! A filter is built once per config version (when the snapshot compiles),
//! shared by every request, and keeps per-request data in the request's
//! [`FilterState`]. Nothing here allocates per request unless a filter
//! pauses or stores state.

use std::{
    future::Future,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use bytes::Bytes;
use http::{HeaderMap, StatusCode, request};
use http_body::Frame;
use strait_codec::FrameHook;
use strait_model::{
    HttpConnectionManager,
    extension::{Extension, TypedValue},
    filter::{FilterOverride, FilterOverrideConfig, find_override, overrides_named},
};

use strait_tls::PeerIdentity;

use strait_model::ratelimit::RouteRateLimits;

use crate::{
    buffer::{BodyBuffering, DownstreamBody},
    conn::{ConnCtx, ConnectionState},
    local_reply::Reply,
    stats::HttpStats,
};

/// Per-request data filters keep between their decode and encode steps
/// (Envoy's filter state): typed values, allocated only when one is stored.
pub type FilterState = http::Extensions;

/// What a filter's decode step decided.
pub enum Decision<'a> {
    /// Go on with the next filter (then the router).
    Continue,
    /// Answer the request here; the filters before this one still encode
    /// the answer.
    Respond(Reply),
    /// Wait for I/O (an authorization call, a fault delay), then decide.
    /// Boxed only when a filter actually pauses.
    Pause(Pin<Box<dyn Future<Output = Decision<'a>> + Send + 'a>>),
}

impl std::fmt::Debug for Decision<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Decision::Continue => f.write_str("Continue"),
            Decision::Respond(r) => f.debug_tuple("Respond").field(r).finish(),
            Decision::Pause(_) => f.write_str("Pause"),
        }
    }
}

/// An HTTP filter, built by its [`crate::HttpFilterFactory`] from its
/// config. Shared by every request of a config version: per-request data
/// goes in the request's [`FilterState`].
pub trait HttpFilter: Send + Sync + 'static {
    /// The request head, before routing to an upstream. May change the
    /// head, answer, or pause.
    fn on_request<'a>(&'a self, req: &'a mut RequestHead<'_>) -> Decision<'a>;

    /// The response head (an upstream's or a local one) on its way back.
    /// Runs only when this filter's `on_request` ran and continued.
    fn on_response(&self, _resp: &mut ResponseHead<'_>) {}

    /// How much of the request body this filter must see before its
    /// `on_request` runs (ext_authz's `with_request_body`): the chain reads
    /// that much into memory first and lends it in [`RequestHead::body`];
    /// the upstream still gets the whole body. `None` (the default): the
    /// head alone, and the body streams.
    fn request_body(&self, _req: &RequestHead<'_>) -> Option<BodyBuffering> {
        None
    }

    /// Whether this filter reads or changes bodies and trailers. Only a
    /// chain with such a filter passes bodies through its filters; the
    /// others stream bodies untouched, at no cost.
    fn wants_body(&self) -> bool {
        false
    }

    /// A request data frame on its way upstream (after the head went).
    /// A filter that changes its length must have fixed the head's
    /// `content-length` in `on_request`. Body steps cannot answer or pause:
    /// they see the stream as it flows.
    fn on_request_data(&self, _data: &mut Bytes) {}

    /// The request's trailers.
    fn on_request_trailers(&self, _trailers: &mut HeaderMap) {}

    /// A response data frame on its way downstream, with the request's
    /// filter state (what `on_request` stored).
    fn on_response_data(&self, _data: &mut Bytes, _state: &mut FilterState) {}

    /// The response's trailers.
    fn on_response_trailers(&self, _trailers: &mut HeaderMap, _state: &mut FilterState) {}

    /// Whether this filter wants [`HttpFilter::on_complete`]. Only a chain
    /// with such a filter watches its responses to the end, at the cost
    /// of one small allocation per request.
    fn wants_completion(&self) -> bool {
        false
    }

    /// The end of a request whose `on_request` ran (Envoy's stream
    /// completion, where access logs and Istio's stats are written):
    /// called once, when the response body has been sent or given up
    /// (the client went away, a reset), on the worker, after every other
    /// step. Must not block.
    fn on_complete(&self, _done: &Completion<'_>) {}
}

/// What a filter sees of a finished request.
#[derive(Debug)]
pub struct Completion<'a> {
    /// The response status sent.
    pub status: StatusCode,
    /// Envoy's response flags for the request, short form (`UF`, `NR`,
    /// ...); empty when none.
    pub response_flags: &'a str,
    /// Body bytes received from the downstream and passed on.
    pub request_body_bytes: u64,
    /// Body bytes of the response sent downstream.
    pub response_body_bytes: u64,
    /// From the request's arrival to the end of its response.
    pub duration: std::time::Duration,
    /// The response's `grpc-status` (its trailers', or its head's for a
    /// trailers-only reply), when it has one.
    pub grpc_status: Option<u32>,
    /// The first URI SAN of the certificate the upstream presented, when
    /// the last attempt went over TLS (Istio's `destination_principal` on
    /// the client side).
    pub upstream_peer_uri_san: Option<&'a str>,
    /// What the filters stored for the request.
    pub state: &'a FilterState,
}

/// Makes HTTP filters of one config type.
pub trait HttpFilterFactory: Send + Sync + 'static {
    /// The type URL of the filter's config
    /// (`type.googleapis.com/<proto full name>`): what `typed_config`'s
    /// `@type` (or a `TypedStruct`'s `type_url`) names.
    fn type_url(&self) -> &str;

    /// Builds the filter from its validated config. Called when a snapshot
    /// compiles (once per changed listener), never per request; an `Err`
    /// refuses the config with its reason.
    fn create(&self, config: &Extension) -> Result<Arc<dyn HttpFilter>, String>;

    /// Builds the filter for one connection manager: what Envoy's filter
    /// factories get besides their config (the stats scope). The default
    /// ignores the scope and calls [`HttpFilterFactory::create`].
    fn create_in(
        &self,
        config: &Extension,
        scope: &FilterScope<'_>,
    ) -> Result<Arc<dyn HttpFilter>, String> {
        let _ = scope;
        self.create(config)
    }

    /// Validates a config the front end has no schema of: the `Any`'s
    /// protobuf bytes, or a `TypedStruct`'s value. The built-in filters'
    /// configs are translated by the front end and never come here.
    fn parse(&self, value: TypedValue<'_>) -> Result<Extension, String> {
        let _ = value;
        Err(format!("no parser for {}", self.type_url()))
    }

    /// The type URL of the filter's per-route config, if it has one.
    fn per_route_type_url(&self) -> Option<&str> {
        None
    }

    /// Validates a per-route config of [`HttpFilterFactory::per_route_type_url`].
    fn parse_per_route(&self, value: TypedValue<'_>) -> Result<Extension, String> {
        let _ = value;
        Err(format!("no per-route config for {}", self.type_url()))
    }
}

/// The connection manager a filter is built for. [`Default`]: none (no
/// prefixes, no clusters), for a filter built outside a proxy.
#[derive(Debug, Clone, Copy, Default)]
pub struct FilterScope<'a> {
    /// Its stats prefix as Envoy hands it to filters: `http.<stat_prefix>.`.
    pub stat_prefix: &'a str,
    /// The connection manager's own `stat_prefix`.
    pub hcm_stat_prefix: &'a str,
    /// The proxy's live clusters, for filters that call out (JWKS
    /// fetches, authorization services); `None` when configs are only
    /// checked (`strait check`), so a filter must not start I/O without
    /// them.
    pub clusters: Option<&'a Arc<strait_upstream::ClusterRegistry>>,
}

impl<'a> FilterScope<'a> {
    /// The scope of `hcm`'s filters; `prefix` is `http.<stat_prefix>.`.
    pub fn of(
        hcm: &'a HttpConnectionManager,
        prefix: &'a str,
        clusters: Option<&'a Arc<strait_upstream::ClusterRegistry>>,
    ) -> Self {
        FilterScope {
            stat_prefix: prefix,
            hcm_stat_prefix: &hcm.stat_prefix,
            clusters,
        }
    }
}

/// What a request's filters read besides its head.
#[derive(Debug)]
pub struct RequestInfo<'a> {
    /// The cluster the route chose, if the route forwards.
    pub cluster: Option<&'a str>,
    /// The downstream peer (Envoy's direct remote address) and the
    /// connection's (original) destination.
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// The trusted client address after `x-forwarded-for` handling
    /// (Envoy's remote address; the peer's when no trusted hop wrote one).
    pub remote: IpAddr,
    /// The connection is TLS-terminated.
    pub tls: bool,
    /// The TLS server name the client asked for.
    pub server_name: Option<&'a str>,
    /// The client certificate's identities, on a mutual-TLS connection.
    pub peer_cert: Option<&'a PeerIdentity>,
    /// The connection manager's stats.
    pub stats: &'a Arc<HttpStats>,
    /// The live clusters, for filters that call a service (an
    /// authorization server, a JWKS endpoint) through one.
    pub upstreams: &'a Arc<strait_upstream::ClusterRegistry>,
    /// The request's HTTP version.
    pub version: http::Version,
    /// The route's and its virtual host's `rate_limits`.
    pub rate_limits: &'a RouteRateLimits,
    /// The route's `typed_per_filter_config` of every level, most specific
    /// first.
    overrides: &'a [FilterOverride],
    conn_state: &'a ConnectionState,
}

impl<'a> RequestInfo<'a> {
    pub(crate) fn new(
        cluster: Option<&'a str>,
        conn: &'a ConnCtx,
        remote: IpAddr,
        version: http::Version,
        overrides: &'a [FilterOverride],
        rate_limits: &'a RouteRateLimits,
    ) -> Self {
        RequestInfo {
            cluster,
            peer: conn.peer,
            local: conn.local,
            remote,
            tls: conn.tls,
            server_name: conn.server_name.as_deref(),
            peer_cert: conn.peer_cert.as_deref(),
            stats: &conn.stats,
            upstreams: &conn.shared.registry,
            version,
            rate_limits,
            overrides,
            conn_state: &conn.filter_state,
        }
    }

    /// Values kept for the connection's lifetime (Envoy's connection-lived
    /// filter state): shared by the connection's requests, dropped with
    /// it. A mutex, but one only this connection's requests take.
    pub fn connection_state(&self) -> &'a ConnectionState {
        self.conn_state
    }
}

/// One filter's view of a request head.
#[derive(Debug)]
pub struct RequestHead<'a> {
    pub head: &'a mut request::Parts,
    pub info: &'a RequestInfo<'a>,
    pub state: &'a mut FilterState,
    /// The start of the request body (or all of it), when this or an
    /// earlier filter asked for it with [`HttpFilter::request_body`].
    pub body: Option<&'a Bytes>,
    /// The filter's `http_filters[].name`, for its per-route config.
    name: &'a str,
}

impl<'a> RequestHead<'a> {
    /// The most specific per-route config of this filter, as its type.
    /// Borrows the route, not the head, so the head stays writable.
    pub fn route_config<T: 'static>(&self) -> Option<&'a T> {
        find_override(self.info.overrides, self.name).and_then(FilterOverrideConfig::get)
    }

    /// Every level's per-route config of this filter, most specific first,
    /// for filters that evaluate them all.
    pub fn route_configs<T: 'static>(&self) -> impl DoubleEndedIterator<Item = &'a T> + use<'a, T> {
        overrides_named(self.info.overrides, self.name).filter_map(FilterOverrideConfig::get)
    }

    /// The most specific per-route config stored under another name (the
    /// deprecated route `cors` fields are stored under the empty name).
    pub fn route_config_named<T: 'static>(&self, name: &str) -> Option<&'a T> {
        find_override(self.info.overrides, name).and_then(FilterOverrideConfig::get)
    }

    /// The filter's `http_filters[].name`.
    pub fn filter_name(&self) -> &str {
        self.name
    }
}

/// One filter's view of a response head.
#[derive(Debug)]
pub struct ResponseHead<'a> {
    pub status: StatusCode,
    pub headers: &'a mut HeaderMap,
    /// The request's filter state; encoders may add to it (what a later
    /// step, such as [`HttpFilter::on_complete`], reads).
    pub state: &'a mut FilterState,
    overrides: &'a [FilterOverride],
    name: &'a str,
}

impl<'a> ResponseHead<'a> {
    /// The most specific per-route config of this filter, as its type.
    pub fn route_config<T: 'static>(&self) -> Option<&'a T> {
        find_override(self.overrides, self.name).and_then(FilterOverrideConfig::get)
    }

    /// Every level's per-route config of this filter, most specific first.
    pub fn route_configs<T: 'static>(&self) -> impl DoubleEndedIterator<Item = &'a T> + use<'a, T> {
        overrides_named(self.overrides, self.name).filter_map(FilterOverrideConfig::get)
    }

    /// The most specific per-route config stored under another name.
    pub fn route_config_named<T: 'static>(&self, name: &str) -> Option<&'a T> {
        find_override(self.overrides, name).and_then(FilterOverrideConfig::get)
    }
}

/// One entry of a compiled chain.
struct Entry {
    name: Box<str>,
    /// `disabled: true` in `http_filters`: off unless a route enables it.
    disabled: bool,
    filter: Arc<dyn HttpFilter>,
}

/// A connection manager's HTTP filters, built by the registry when the
/// snapshot compiles.
#[derive(Default)]
pub struct FilterChain {
    entries: Box<[Entry]>,
    /// Some filter has body steps ([`HttpFilter::wants_body`]).
    wants_body: bool,
    /// Some filter wants [`HttpFilter::on_complete`].
    wants_completion: bool,
    /// A filter registered in the router's place (the router's type URL):
    /// it answers every request that reaches it. `None`: the built-in
    /// router forwards.
    terminal: Option<Arc<dyn HttpFilter>>,
}

impl std::fmt::Debug for FilterChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|e| &e.name))
            .finish()
    }
}

/// What the encode pass needs of the decode pass.
#[derive(Debug, Default)]
pub(crate) struct Decoded {
    /// How many filters ran their decode step (encoders run for those).
    ran: usize,
    pub(crate) state: FilterState,
}

impl FilterChain {
    pub(crate) fn new(
        filters: Vec<(String, bool, Arc<dyn HttpFilter>)>,
        terminal: Option<Arc<dyn HttpFilter>>,
    ) -> Self {
        FilterChain {
            terminal,
            wants_body: filters.iter().any(|(_, _, f)| f.wants_body()),
            wants_completion: filters.iter().any(|(_, _, f)| f.wants_completion()),
            entries: filters
                .into_iter()
                .map(|(name, disabled, filter)| Entry {
                    name: name.into(),
                    disabled,
                    filter,
                })
                .collect(),
        }
    }

    /// No filter and the built-in router: requests go straight to it.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.terminal.is_none()
    }

    /// Runs a terminal registered in the router's place on the request
    /// head; `None` when the built-in router forwards. A terminal that
    /// continues has nothing after it: the request is answered 500.
    pub(crate) async fn terminate(
        &self,
        head: &mut request::Parts,
        body: &mut DownstreamBody,
        info: &RequestInfo<'_>,
        decoded: &mut Decoded,
    ) -> Option<Reply> {
        let terminal = self.terminal.as_ref()?;
        let mut req = RequestHead {
            head,
            info,
            state: &mut decoded.state,
            body: body.buffered(),
            name: "envoy.filters.http.router",
        };
        let answer = settle(terminal.on_request(&mut req)).await;
        Some(answer.unwrap_or_else(|| {
            Reply::new(StatusCode::INTERNAL_SERVER_ERROR).details("filter_chain_not_terminated")
        }))
    }

    /// The entries whose body steps run for a request: those whose decode
    /// step ran, enabled for the route, with body steps. `None` (and no
    /// allocation) for a chain without body filters.
    pub(crate) fn body_filters(
        &self,
        decoded: &Decoded,
        overrides: &[FilterOverride],
    ) -> Option<BodyFilters> {
        if !self.wants_body {
            return None;
        }
        let ran = self.entries.get(..decoded.ran).unwrap_or_default();
        Some(
            ran.iter()
                .filter(|e| e.filter.wants_body() && Self::enabled(e, overrides))
                .map(|e| Arc::clone(&e.filter))
                .collect(),
        )
    }

    /// The entries whose `on_complete` runs for a request: those whose
    /// decode step ran, enabled for the route, that want it. `None` (and
    /// no allocation) for a chain without such filters.
    pub(crate) fn completion_filters(
        &self,
        decoded: &Decoded,
        overrides: &[FilterOverride],
    ) -> Option<BodyFilters> {
        if !self.wants_completion {
            return None;
        }
        let ran = self.entries.get(..decoded.ran).unwrap_or_default();
        let found: BodyFilters = ran
            .iter()
            .filter(|e| e.filter.wants_completion() && Self::enabled(e, overrides))
            .map(|e| Arc::clone(&e.filter))
            .collect();
        (!found.is_empty()).then_some(found)
    }

    /// Whether entry `e` runs for a route with `overrides`: a route's
    /// `FilterConfig` may disable it or enable one listed as disabled.
    fn enabled(e: &Entry, overrides: &[FilterOverride]) -> bool {
        match find_override(overrides, &e.name) {
            Some(FilterOverrideConfig::Disabled) => false,
            None if e.disabled => false,
            _ => true,
        }
    }

    /// Runs the decode pass over `head`. `Err` carries the answer of the
    /// filter that responded (the state still encodes it).
    /// A filter that wants the start of the body first gets it read here
    /// (a stall longer than `idle` ends the request).
    pub(crate) async fn decode(
        &self,
        head: &mut request::Parts,
        body: &mut DownstreamBody,
        info: &RequestInfo<'_>,
        idle: Option<std::time::Duration>,
    ) -> (Decoded, Option<Reply>) {
        let mut out = Decoded::default();
        for (i, e) in self.entries.iter().enumerate() {
            out.ran = i;
            if !Self::enabled(e, info.overrides) {
                continue;
            }
            let wants = e.filter.request_body(&RequestHead {
                head,
                info,
                state: &mut out.state,
                body: None,
                name: &e.name,
            });
            if let Some(want) = wants
                && let Err(reply) = body.buffer(want, idle).await
            {
                return (out, Some(reply));
            }
            let answered = {
                let mut req = RequestHead {
                    head,
                    info,
                    state: &mut out.state,
                    body: body.buffered(),
                    name: &e.name,
                };
                settle(e.filter.on_request(&mut req)).await
            };
            if let Some(reply) = answered {
                return (out, Some(reply));
            }
        }
        out.ran = self.entries.len();
        (out, None)
    }

    /// Runs the encode pass over a response head, in reverse order.
    pub(crate) fn encode(
        &self,
        decoded: &mut Decoded,
        overrides: &[FilterOverride],
        status: StatusCode,
        headers: &mut HeaderMap,
    ) {
        let ran = self.entries.get(..decoded.ran).unwrap_or_default();
        for e in ran.iter().rev() {
            if !Self::enabled(e, overrides) {
                continue;
            }
            e.filter.on_response(&mut ResponseHead {
                status,
                headers,
                state: &mut decoded.state,
                overrides,
                name: &e.name,
            });
        }
    }
}

/// Waits out any pauses of a decision: the reply when the filter answered,
/// `None` when it continued.
async fn settle(mut decision: Decision<'_>) -> Option<Reply> {
    loop {
        match decision {
            Decision::Continue => return None,
            Decision::Respond(reply) => return Some(reply),
            Decision::Pause(wait) => decision = wait.await,
        }
    }
}

/// The request body's pass through the body filters, in chain order,
/// counted when a filter wants the request's end.
pub(crate) struct RequestBodyFilters {
    pub(crate) filters: Option<BodyFilters>,
    pub(crate) counted: Option<Arc<AtomicU64>>,
}

/// The filters with body steps that run for one request, in chain order.
pub(crate) type BodyFilters = Arc<[Arc<dyn HttpFilter>]>;

impl FrameHook for RequestBodyFilters {
    fn frame(&mut self, frame: &mut Frame<Bytes>) {
        let filters = self.filters.as_deref().unwrap_or_default();
        if let Some(data) = frame.data_mut() {
            filters.iter().for_each(|f| f.on_request_data(data));
            if let Some(n) = &self.counted {
                n.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
        } else if let Some(trailers) = frame.trailers_mut() {
            filters.iter().for_each(|f| f.on_request_trailers(trailers));
        }
    }
}

/// The response body's pass through the body filters, in reverse order,
/// with the request's filter state; and the request's end, for the filters
/// that want it (run when this is dropped: the body ended or was given up).
pub(crate) struct ResponseBodyFilters {
    pub(crate) filters: Option<BodyFilters>,
    pub(crate) state: FilterState,
    pub(crate) completion: Option<Completing>,
}

/// What the end of a request will report, gathered as the response goes.
pub(crate) struct Completing {
    pub(crate) filters: BodyFilters,
    pub(crate) status: StatusCode,
    pub(crate) flags: &'static str,
    pub(crate) started: std::time::Instant,
    pub(crate) request_bytes: Arc<AtomicU64>,
    pub(crate) response_bytes: u64,
    pub(crate) grpc_status: Option<u32>,
    pub(crate) upstream_peer_uri_san: Option<Arc<str>>,
}

static GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");

/// A `grpc-status` header's value (looked up by a ready name: every
/// completed response asks).
pub(crate) fn grpc_status(headers: &HeaderMap) -> Option<u32> {
    headers
        .get(&GRPC_STATUS)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

impl FrameHook for ResponseBodyFilters {
    fn frame(&mut self, frame: &mut Frame<Bytes>) {
        let state = &mut self.state;
        let filters = self.filters.as_deref().unwrap_or_default();
        if let Some(data) = frame.data_mut() {
            filters
                .iter()
                .rev()
                .for_each(|f| f.on_response_data(data, state));
            if let Some(c) = &mut self.completion {
                c.response_bytes += data.len() as u64;
            }
        } else if let Some(trailers) = frame.trailers_mut() {
            filters
                .iter()
                .rev()
                .for_each(|f| f.on_response_trailers(trailers, state));
            if let Some(c) = &mut self.completion
                && let Some(s) = grpc_status(trailers)
            {
                c.grpc_status = Some(s);
            }
        }
    }
}

impl Drop for ResponseBodyFilters {
    fn drop(&mut self) {
        let Some(c) = self.completion.take() else {
            return;
        };
        let done = Completion {
            status: c.status,
            response_flags: c.flags,
            request_body_bytes: c.request_bytes.load(Ordering::Relaxed),
            response_body_bytes: c.response_bytes,
            duration: c.started.elapsed(),
            grpc_status: c.grpc_status,
            upstream_peer_uri_san: c.upstream_peer_uri_san.as_deref(),
            state: &self.state,
        };
        c.filters.iter().for_each(|f| f.on_complete(&done));
    }
}
