//! The per-request HTTP path: route, pick a host, forward, stream back.
//!
//! A request loads the snapshot once and reads everything (listener, routes,
//! timeouts) from it, so it sees exactly one config version.

use std::{
    sync::{Arc, atomic::AtomicU64},
    time::Instant,
};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, Version, header};
use hyper::body::Incoming;
use strait_codec::{FrameHook, headers};
use strait_model::{
    HttpConnectionManager, NetworkFilter, RouteAction, ServerHeaderTransformation,
    filter::FilterOverride, ratelimit::RouteRateLimits,
};
use strait_route::{RequestView, RouteResult};
use strait_tls::ApplicationProtocols;

use crate::{
    access_log::{Pending, UpstreamFacts},
    body::{ProxyBody, Tracked},
    buffer::DownstreamBody,
    chain::{Completing, FilterChain, RequestBodyFilters, RequestInfo, ResponseBodyFilters},
    conn::{ConnCtx, StreamGuard},
    edge,
    forward::forward,
    local_reply::{LocalReply, Reply, ReplyInfo},
    local_reply_config,
    routed::{Routed, Stream, bad_request, refused},
    timeouts,
    trace::{self, InFlight},
    xfcc,
};

static X_SERVICE_TIME: HeaderName = HeaderName::from_static("x-envoy-upstream-service-time");
static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// [`handle`] with the request counted as an open stream of its
/// connection until its response body is done (or dropped), when its
/// access-log entry, if any, is written.
pub(crate) async fn handle_counted(
    req: Request<Incoming>,
    conn: Arc<ConnCtx>,
) -> Response<Tracked> {
    let stream = StreamGuard::open(&conn);
    let mut log = None;
    let mut span = None;
    let resp = handle(req, conn, &mut log, &mut span).await;
    resp.map(|b| Tracked::new(b, stream, log, span))
}

/// Handles one request end to end. Never fails: every error is a response.
/// `log` gets the request's access-log entry when its connection manager
/// has access logs; `span` the request's span when it is traced and
/// sampled.
pub(crate) async fn handle(
    req: Request<Incoming>,
    conn: Arc<ConnCtx>,
    log: &mut Option<Box<Pending>>,
    span: &mut Option<Box<InFlight>>,
) -> Response<ProxyBody> {
    let started = Instant::now();
    conn.stats.rq_total.increment(1);
    let snapshot = conn.shared.store.load();
    let held = conn.chain.load_full();
    let (listener, chain) = conn.chain_in(&snapshot, &held);
    let limit = listener.spec.buffer_limit as usize;
    let direction = listener.spec.direction;
    let hcm = listener
        .chain(chain)
        .and_then(|(spec, compiled)| match &spec.terminal {
            NetworkFilter::Http(hcm) => {
                // The registry's chain; `None` only for a manager without
                // filters (see `strait_snapshot::NoFilters`).
                let filters = compiled
                    .http_filters
                    .as_deref()
                    .and_then(|f| f.downcast_ref::<FilterChain>());
                compiled.routes.as_ref().map(|r| (hcm, r, filters))
            }
            NetworkFilter::Tcp(_) | NetworkFilter::Extension(_) => None,
        });
    let mut resp = match hcm {
        None => LocalReply::ListenerDraining.response(),
        Some((hcm, routes, filters)) => {
            let mut req = req;
            // Before routing, as Envoy mutates request headers first.
            xfcc::apply(
                req.headers_mut(),
                hcm.forward_client_cert,
                conn.xfcc.as_ref(),
            );
            if hcm.normalize_path
                && let Some(normal) = req
                    .uri()
                    .path_and_query()
                    .and_then(|pq| strait_route::normalize_path(pq.as_str()))
            {
                let mut parts = req.uri().clone().into_parts();
                parts.path_and_query = normal.parse().ok();
                if let Ok(uri) = http::Uri::from_parts(parts) {
                    *req.uri_mut() = uri;
                }
            }
            let grpc = crate::local_reply::is_grpc(req.headers());
            // Envoy judges the request's origin after its codec checks
            // and before routing, so routes and filters see the result.
            let refused = refuse(&req, hcm);
            let origin = edge::Origin::classify(req.headers(), conn.peer, hcm);
            edge::mutate(req.headers_mut(), &origin, conn.peer, hcm, conn.tls);
            // Envoy's connection manager gives every request an id before
            // routing, so local replies' log entries carry one too.
            if hcm.generate_request_id && !req.headers().contains_key(&X_REQUEST_ID) {
                req.headers_mut()
                    .insert(X_REQUEST_ID.clone(), headers::request_id());
            }
            // The decision may rewrite `x-request-id`, which the log reads.
            let trace_forced = match &hcm.tracing {
                Some(t) => {
                    let (reason, s) = trace::start(t, &mut req, &conn, direction, started);
                    *span = s;
                    reason == strait_trace::Reason::ServiceForced
                }
                None => false,
            };
            *log = Pending::start(&hcm.access_logs, &conn, &req, started, origin.client);
            if let Some(p) = log.as_deref_mut() {
                p.trace_forced = trace_forced;
            }
            // The request as filters and routes see it (after the edge rules).
            let local_reply = hcm.local_reply.as_deref().map(|c| {
                let facts = local_reply_config::RequestFacts::of(&req, c, conn.local, conn.peer);
                (c, facts)
            });
            let base = RequestView::from_request(&req);
            let authority = strait_route::strip_host_port(
                base.authority,
                hcm.strip_host_port,
                conn.local.port(),
            );
            let view = base
                .with_authority(authority)
                .with_random(headers::random_u64());
            let stream = Stream {
                conn: &conn,
                hcm,
                started,
                buffer_limit: limit,
                origin,
            };
            let mut resp = match refused {
                Some(refused) => refused,
                None => {
                    // The filters run before the router whatever the route
                    // table decided: a policy filter judges a direct
                    // response, a redirect or a 404 too, as in Envoy.
                    let action = match routes.route(&view) {
                        RouteResult::NoVirtualHost | RouteResult::NoRoute(_) => Action::Local {
                            resp: LocalReply::NoRoute.response(),
                            overrides: &[],
                            no_route: true,
                        },
                        RouteResult::Matched(m) => match m.action() {
                            _ if record_route(log, &m) => unreachable!("record_route is false"),
                            RouteAction::DirectResponse { status, body } => {
                                let mut resp = direct(*status, body.as_deref(), "direct_response");
                                m.apply_response_headers(resp.headers_mut(), None);
                                Action::local(resp, &m)
                            }
                            RouteAction::Redirect(_) => {
                                let (status, location) =
                                    m.redirect(&view).unwrap_or((301, String::new()));
                                // Envoy reports a redirect as a direct response too.
                                let mut resp = direct(status, None, "direct_response");
                                if let Ok(v) = HeaderValue::from_str(&location) {
                                    resp.headers_mut().insert(header::LOCATION, v);
                                }
                                m.apply_response_headers(resp.headers_mut(), None);
                                Action::local(resp, &m)
                            }
                            RouteAction::Forward(action) => {
                                Action::Forward(Routed::new(m, action, &view))
                            }
                        },
                    };
                    let mut scratch = UpstreamFacts::default();
                    if let (Some(s), Action::Forward(routed)) = (span.as_deref_mut(), &action) {
                        s.cluster = Some(routed.choice.name.to_string()).filter(|n| !n.is_empty());
                    }
                    let facts = match log.as_deref_mut() {
                        Some(p) => {
                            if let Action::Forward(routed) = &action {
                                p.cluster =
                                    Some(routed.choice.name.to_string()).filter(|n| !n.is_empty());
                            }
                            &mut p.upstream
                        }
                        None => &mut scratch,
                    };
                    if span.as_deref().is_some_and(InFlight::wants_metadata) {
                        facts.wants_metadata = true;
                    }
                    let resp = filtered(req, &stream, action, filters, &mut *facts).await;
                    if let Some(s) = span.as_deref_mut() {
                        s.request_body.clone_from(&facts.request_body);
                        if s.wants_metadata() {
                            s.metadata.clone_from(&facts.metadata);
                        }
                    }
                    resp
                }
            };
            if let Some((config, facts)) = &local_reply {
                local_reply_config::apply(config, &mut resp, facts, started.elapsed());
            }
            if grpc {
                crate::local_reply::grpc_local_reply(&mut resp);
            }
            resp.with_server_header(hcm)
        }
    };
    if resp.body().is_upstream() {
        let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        resp.headers_mut()
            .insert(X_SERVICE_TIME.clone(), HeaderValue::from(ms));
    }
    if let Some(p) = log.as_deref_mut() {
        let info = resp.extensions().get::<ReplyInfo>();
        p.response(&resp, info.map(|i| (i.flag, &i.details)));
    }
    if let Some(s) = span.as_deref_mut() {
        let flag = resp.extensions().get::<ReplyInfo>().map_or("", |i| i.flag);
        s.response(resp.status().as_u16(), flag);
    }
    conn.stats.response(resp.status().as_u16());
    conn.stats
        .rq_time
        .record(started.elapsed().as_secs_f64() * 1000.0);
    resp
}

/// Records the matched route's name for the access log; always false, so
/// it can sit in a match guard before the route's action is looked at.
fn record_route(log: &mut Option<Box<Pending>>, m: &strait_route::Matched<'_>) -> bool {
    if let Some(p) = log.as_deref_mut()
        && !m.route().name().is_empty()
    {
        p.route_name = Some(m.route().name().to_owned());
    }
    false
}

trait WithServerHeader {
    fn with_server_header(self, hcm: &HttpConnectionManager) -> Self;
}

impl WithServerHeader for Response<ProxyBody> {
    fn with_server_header(mut self, hcm: &HttpConnectionManager) -> Self {
        let set = match hcm.server_header {
            ServerHeaderTransformation::Overwrite => true,
            ServerHeaderTransformation::AppendIfAbsent => {
                !self.headers().contains_key(header::SERVER)
            }
            ServerHeaderTransformation::PassThrough => false,
        };
        if set && let Ok(v) = HeaderValue::from_str(&hcm.server_name) {
            self.headers_mut().insert(header::SERVER, v);
        }
        self
    }
}

/// A route's `direct_response` or redirect, as a local reply without a
/// response flag (Envoy counts neither as a failure).
fn direct(status: u16, body: Option<&str>, details: &'static str) -> Response<ProxyBody> {
    let status = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    let body = body.map_or_else(Bytes::new, |b| Bytes::copy_from_slice(b.as_bytes()));
    Reply::new(status).body(body).details(details).response()
}

/// The rate-limit policies of a request without a route action.
static NO_RATE_LIMITS: RouteRateLimits = RouteRateLimits {
    route: Vec::new(),
    virtual_host: Vec::new(),
    include_vh_rate_limits: false,
};

/// What the route table decided for a request, carried out once the
/// filters let it through (Envoy's router filter does all three).
enum Action<'t> {
    Forward(Routed<'t>),
    /// A direct response or redirect of the matched route, or no route
    /// (404): built before the filters, sent if they let it through.
    Local {
        resp: Response<ProxyBody>,
        overrides: &'t [FilterOverride],
        no_route: bool,
    },
}

impl<'t> Action<'t> {
    fn local(resp: Response<ProxyBody>, matched: &strait_route::Matched<'t>) -> Self {
        Action::Local {
            resp,
            overrides: matched.route().per_filter_config(),
            no_route: false,
        }
    }

    /// The router's part: forward (on connections offering `alpn`, the
    /// ALPN override a filter set, if any), or send the local answer.
    async fn run(
        self,
        req: Request<DownstreamBody>,
        s: &Stream<'_>,
        hook: Option<Box<dyn FrameHook>>,
        facts: &mut UpstreamFacts,
        alpn: Option<&ApplicationProtocols>,
    ) -> Response<ProxyBody> {
        match self {
            Action::Forward(routed) => {
                let mut resp = forward(req, s, &routed, hook, facts, alpn).await;
                // Route-level response header changes apply to every
                // response of the route, local replies included, as
                // Envoy's router does (a local action has them already).
                routed
                    .matched
                    .apply_response_headers_for(resp.headers_mut(), Some(&routed.choice));
                resp
            }
            Action::Local { resp, no_route, .. } => {
                if no_route {
                    s.conn.stats.no_route.increment(1);
                }
                resp
            }
        }
    }
}

/// Runs the HTTP filters before the router's action: a filter may answer
/// first (fault abort, CORS preflight, a policy's denial), and the response
/// passes back through them.
async fn filtered(
    req: Request<Incoming>,
    s: &Stream<'_>,
    action: Action<'_>,
    filters: Option<&FilterChain>,
    facts: &mut UpstreamFacts,
) -> Response<ProxyBody> {
    let Some(chain) = filters.filter(|f| !f.is_empty()) else {
        return action
            .run(req.map(DownstreamBody::new), s, None, facts, None)
            .await;
    };
    let (mut parts, body) = req.into_parts();
    let mut body = DownstreamBody::new(body);
    let (idle, overrides, cluster, rate_limits) = match &action {
        Action::Forward(routed) => (
            timeouts::stream_idle(routed.action.idle_timeout, s.hcm.stream_idle_timeout),
            routed.matched.route().per_filter_config(),
            Some(&*routed.choice.name).filter(|n| !n.is_empty()),
            routed.matched.route().rate_limits(),
        ),
        // Envoy's rate-limit policies belong to a route action: a direct
        // response, a redirect or no route has none.
        Action::Local { overrides, .. } => (
            timeouts::stream_idle(None, s.hcm.stream_idle_timeout),
            *overrides,
            None,
            &NO_RATE_LIMITS,
        ),
    };
    let conn = s.conn;
    let info = RequestInfo::new(
        cluster,
        conn,
        s.origin.client,
        parts.version,
        overrides,
        rate_limits,
    );
    let (mut decoded, mut reply) = chain.decode(&mut parts, &mut body, &info, idle).await;
    if reply.is_none() {
        reply = chain
            .terminate(&mut parts, &mut body, &info, &mut decoded)
            .await;
    }
    // Both bodies pass the same filters: found once, shared.
    let body_filters = chain
        .body_filters(&decoded, overrides)
        .filter(|f| !f.is_empty());
    let completion = chain.completion_filters(&decoded, overrides);
    let request_bytes = completion.as_ref().map(|_| Arc::new(AtomicU64::new(0)));
    let mut resp = match reply {
        Some(reply) => reply.response(),
        None => {
            let hook = (body_filters.is_some() || request_bytes.is_some()).then(|| {
                Box::new(RequestBodyFilters {
                    filters: body_filters.clone(),
                    counted: request_bytes.clone(),
                }) as Box<dyn FrameHook>
            });
            // Envoy's `envoy.network.application_protocols`: the upstream
            // ALPN a filter (Istio's `istio.alpn`) chose for this request.
            let alpn = decoded.state.get::<ApplicationProtocols>();
            action
                .run(Request::from_parts(parts, body), s, hook, &mut *facts, alpn)
                .await
        }
    };
    let status = resp.status();
    chain.encode(&mut decoded, overrides, status, resp.headers_mut());
    if facts.wants_metadata {
        facts.metadata = crate::metadata::dynamic_metadata(&decoded.state).cloned();
    }
    let completion = completion.map(|filters| Completing {
        filters,
        status,
        flags: resp
            .extensions()
            .get::<crate::local_reply::ReplyInfo>()
            .map_or("", |i| i.flag),
        started: s.started,
        request_bytes: request_bytes.unwrap_or_default(),
        response_bytes: 0,
        grpc_status: crate::chain::grpc_status(resp.headers()),
        upstream_peer_uri_san: facts.peer_uri_san.clone(),
    });
    let observe_only = body_filters.is_none();
    if body_filters.is_some() || completion.is_some() {
        let hook = Box::new(ResponseBodyFilters {
            filters: body_filters,
            state: decoded.state,
            completion,
        });
        resp = resp.map(|b| {
            if observe_only {
                ProxyBody::Observed(Box::new(b), hook)
            } else {
                ProxyBody::Filtered(Box::new(b), hook)
            }
        });
    }
    resp
}

/// A request the proxy will not route, answered as Envoy's codec answers
/// it: more than one `Host` (RFC 9112 §3.2: 400), or a head larger than
/// `max_request_headers_kb` (431). hyper's own head limit is its read
/// buffer, which one read can overshoot, so the exact count (names, values,
/// method and target, as Envoy's header map counts them) is made here.
/// Allocation-free: one pass over the header map.
fn refuse(req: &Request<Incoming>, hcm: &HttpConnectionManager) -> Option<Response<ProxyBody>> {
    if req.version() < Version::HTTP_11 {
        // Envoy's default (`accept_http_10: false`): HTTP/1.0 is refused with
        // 426, which tells the client to speak HTTP/1.1.
        return Some(refused(http::StatusCode::UPGRADE_REQUIRED, "low_version"));
    }
    let h = req.headers();
    if req.version() < Version::HTTP_2 && h.get_all(header::HOST).iter().nth(1).is_some() {
        return Some(bad_request());
    }
    let target = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    let bytes = h
        .iter()
        .fold(req.method().as_str().len() + target, |n, (k, v)| {
            n + k.as_str().len() + v.len()
        });
    if bytes > hcm.max_request_headers_kb as usize * 1024 {
        return Some(refused(
            http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "http1.headers_too_large",
        ));
    }
    None
}
