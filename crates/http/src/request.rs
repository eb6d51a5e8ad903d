//! The per-request HTTP path: route, pick a host, forward, stream back.
//!
//! A request loads the snapshot once and reads everything (listener, routes,
//! timeouts) from it, so it sees exactly one config version.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, Uri, Version, header, uri::PathAndQuery};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use strait_codec::{Body, headers};
use strait_model::{
    ForwardAction, HttpConnectionManager, NetworkFilter, RouteAction, ServerHeaderTransformation,
};
use strait_route::{Choice, HostRewriteOutcome, Matched, RequestView, RouteResult, StreamDuration};

use strait_model::filter::FilterOverride;

use crate::{
    body::ProxyBody, conn::ConnCtx, edge, filters, hash, local_reply::LocalReply, mirror,
    retry::Plan, router, timeouts, xfcc,
};

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_EXPECTED_TIMEOUT: HeaderName = HeaderName::from_static("x-envoy-expected-rq-timeout-ms");
static X_ORIGINAL_HOST: HeaderName = HeaderName::from_static("x-envoy-original-host");
static X_ORIGINAL_PATH: HeaderName = HeaderName::from_static("x-envoy-original-path");
static X_SERVICE_TIME: HeaderName = HeaderName::from_static("x-envoy-upstream-service-time");

/// Handles one request end to end. Never fails: every error is a response.
pub(crate) async fn handle(req: Request<Incoming>, conn: Arc<ConnCtx>) -> Response<ProxyBody> {
    let started = Instant::now();
    conn.stats.rq_total.increment(1);
    let snapshot = conn.shared.store.load();
    let listener = snapshot.listener(&conn.listener);
    let limit = listener.map_or(0, |l| l.spec.buffer_limit as usize);
    let hcm = listener
        .and_then(|l| l.chain(conn.chain))
        .and_then(|(spec, compiled)| match &spec.terminal {
            NetworkFilter::Http(hcm) => compiled.routes.as_ref().map(|r| (hcm, r)),
            NetworkFilter::Tcp(_) => None,
        });
    let mut resp = match hcm {
        None => LocalReply::ListenerDraining.response(),
        Some((hcm, routes)) => {
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
            // Envoy judges the request's origin after its codec checks
            // and before routing, so routes and filters see the result.
            let refused = refuse(&req, hcm);
            let origin = edge::Origin::classify(req.headers(), conn.peer, hcm);
            edge::mutate(req.headers_mut(), &origin, conn.peer, hcm, conn.tls);
            let base = RequestView::from_request(&req);
            let authority = strait_route::strip_host_port(
                base.authority,
                hcm.strip_host_port,
                conn.local.port(),
            );
            let view = base
                .with_authority(authority)
                .with_random(headers::random_u64());
            match refused {
                Some(refused) => refused,
                None => match routes.route(&view) {
                    RouteResult::NoVirtualHost | RouteResult::NoRoute(_) => {
                        conn.stats.no_route.increment(1);
                        LocalReply::NoRoute.response()
                    }
                    RouteResult::Matched(m) => match m.action() {
                        RouteAction::DirectResponse { status, body } => {
                            let mut resp = direct(*status, body.as_deref());
                            m.apply_response_headers(resp.headers_mut(), None);
                            resp
                        }
                        RouteAction::Redirect(_) => {
                            let (status, location) =
                                m.redirect(&view).unwrap_or((301, String::new()));
                            let mut resp = direct(status, None);
                            if let Ok(v) = HeaderValue::from_str(&location) {
                                resp.headers_mut().insert(header::LOCATION, v);
                            }
                            m.apply_response_headers(resp.headers_mut(), None);
                            resp
                        }
                        RouteAction::Forward(action) => {
                            let routed = Routed::new(m, action, &view);
                            let overrides = m.route().per_filter_config();
                            filtered(req, &conn, hcm, routed, started, overrides, limit, origin)
                                .await
                        }
                    },
                },
            }
            .with_server_header(hcm)
        }
    };
    if matches!(resp.body(), ProxyBody::Upstream(..)) {
        let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        resp.headers_mut()
            .insert(X_SERVICE_TIME.clone(), HeaderValue::from(ms));
    }
    conn.stats.response(resp.status().as_u16());
    conn.stats
        .rq_time
        .record(started.elapsed().as_secs_f64() * 1000.0);
    resp
}

/// What routing decided for a forwarded request, detached from the request
/// so the request can be taken apart and changed.
pub(crate) struct Routed<'t> {
    pub(crate) action: &'t ForwardAction,
    pub(crate) matched: Matched<'t>,
    pub(crate) choice: Choice<'t>,
    pub(crate) rewritten: Option<String>,
    /// The route timeout for this request (`grpc-timeout` considered).
    pub(crate) timeout: Option<Duration>,
    /// The route's `max_stream_duration` (or its `grpc-timeout` form).
    pub(crate) stream_limit: Option<Duration>,
    pub(crate) host: HostAction,
}

/// What to do with the upstream request's host.
pub(crate) enum HostAction {
    Keep,
    Set(HeaderValue),
    /// `auto_host_rewrite`: the chosen upstream host's DNS name.
    Auto,
}

impl<'t> Routed<'t> {
    fn new(matched: Matched<'t>, action: &'t ForwardAction, view: &RequestView<'_>) -> Self {
        let chosen = matched.cluster(view);
        let host = match matched.host_rewrite(view, chosen.as_ref()) {
            HostRewriteOutcome::Keep => HostAction::Keep,
            HostRewriteOutcome::Set(h) => {
                HeaderValue::from_str(&h).map_or(HostAction::Keep, HostAction::Set)
            }
            HostRewriteOutcome::Auto => HostAction::Auto,
        };
        Routed {
            action,
            matched,
            choice: matched.choice(view).unwrap_or(Choice {
                name: "".into(),
                weighted: None,
            }),
            rewritten: matched.rewritten_path(view.path),
            timeout: matched.upstream_timeout(view),
            stream_limit: match matched.stream_duration(view) {
                StreamDuration::Limit(d) => Some(d),
                StreamDuration::Inherit | StreamDuration::Disabled => None,
            },
            host,
        }
    }
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

fn direct(status: u16, body: Option<&str>) -> Response<ProxyBody> {
    let body = body
        .map(|b| Body::full(Bytes::copy_from_slice(b.as_bytes())))
        .unwrap_or_default();
    let mut resp = Response::new(ProxyBody::Local(body));
    *resp.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    if http_body::Body::size_hint(resp.body()).exact() != Some(0) {
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    }
    resp
}

async fn forward(
    mut req: Request<Incoming>,
    conn: &ConnCtx,
    hcm: &HttpConnectionManager,
    routed: &Routed<'_>,
    started: Instant,
    buffer_limit: usize,
    origin: edge::Origin,
) -> Response<ProxyBody> {
    let action = routed.action;
    let upgrade = headers::upgrade_token(req.headers());
    if let Some(token) = &upgrade
        && !hcm.upgrades.iter().any(|u| u == token)
    {
        return LocalReply::UpgradeRefused.response();
    }
    let Some(cluster) = conn.shared.registry.get(&routed.choice.name) else {
        // Envoy's `cluster_not_found_response_code` (503 by default).
        let mut resp = LocalReply::NoCluster.response();
        *resp.status_mut() = http::StatusCode::from_u16(action.cluster_not_found_status)
            .unwrap_or(http::StatusCode::SERVICE_UNAVAILABLE);
        return resp;
    };
    let downstream_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
    let h2 = match cluster.spec().protocol {
        strait_model::UpstreamProtocol::Http1 => false,
        strait_model::UpstreamProtocol::Http2 => true,
        strait_model::UpstreamProtocol::Downstream => req.version() == http::Version::HTTP_2,
    };
    let mut plan = Plan::new(
        action.retry_policy.as_ref(),
        routed.timeout,
        req.headers_mut(),
        origin.internal,
    );
    if upgrade.is_some() {
        // An upgraded request's body is a tunnel: it cannot be replayed.
        plan.max_retries = 0;
    }
    let hash = if action.hash_policy.is_empty() {
        None
    } else {
        hash::request_hash(
            &action.hash_policy,
            req.headers(),
            req.uri().query(),
            // Envoy hashes the trusted client address.
            origin.client,
            strait_upstream::lb::xxhash64,
        )
    };
    let original_dst = original_destination(&cluster, req.headers(), conn.local);
    let route_timeout = plan.route_timeout;
    let expected = plan.per_try_timeout.or(route_timeout);
    let (body_done, mut up_req) =
        match upstream_request(req, hcm, expected, routed, h2, upgrade.is_some()) {
            Ok(r) => r,
            Err(BadRequest) => return bad_request(),
        };
    // Keep a copy of the body when it may be sent again (a retry or a
    // mirror), up to the listener's buffer limit, as Envoy does.
    let replayable = plan.max_retries > 0 || !action.request_mirror_policies.is_empty();
    let recording = if replayable && !matches!(up_req.body(), Body::Empty) {
        let body = std::mem::take(up_req.body_mut());
        let (body, watch) = Body::recording(body, buffer_limit);
        *up_req.body_mut() = body;
        Some(watch)
    } else {
        None
    };
    if !action.request_mirror_policies.is_empty() {
        mirror::spawn(
            &conn.shared.registry,
            &action.request_mirror_policies,
            &up_req,
            recording.as_ref(),
        );
    }
    let attempts = router::Attempts {
        cluster: &cluster,
        plan,
        hash,
        attempt_count: action.include_attempt_count,
        auto_host: matches!(routed.host, HostAction::Auto),
        recording,
        original_dst,
    };
    let idle = timeouts::stream_idle(action.idle_timeout, hcm.stream_idle_timeout);
    let deadline = timeouts::with_stream_limit(
        started,
        routed.stream_limit,
        timeouts::Deadline {
            started: started.into(),
            request_timeout: hcm.request_timeout,
            body: body_done.clone(),
            route_timeout,
            idle,
        }
        .fired(),
    );
    let mut resp = match router::send(attempts, up_req, deadline).await {
        Ok(r) => r,
        Err(reply) => return reply.response(),
    };
    let switching = resp.status() == http::StatusCode::SWITCHING_PROTOCOLS;
    if switching && let Some(down) = downstream_upgrade {
        let up = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            if let (Ok(down), Ok(up)) = (down.await, up.await) {
                let _ =
                    tokio::io::copy_bidirectional(&mut TokioIo::new(down), &mut TokioIo::new(up))
                        .await;
            }
        });
    }
    headers::strip_hop_by_hop(resp.headers_mut(), switching);
    let idle = idle.map(|limit| crate::body::IdleTimer::new(limit, body_done));
    resp.map(|body| ProxyBody::Upstream(body, idle))
}

/// Runs the HTTP filters around [`forward`]: a filter may answer first
/// (fault abort, CORS preflight), and the response passes back through them.
#[allow(clippy::too_many_arguments)]
async fn filtered(
    req: Request<Incoming>,
    conn: &ConnCtx,
    hcm: &HttpConnectionManager,
    routed: Routed<'_>,
    started: Instant,
    overrides: &[FilterOverride],
    buffer_limit: usize,
    origin: edge::Origin,
) -> Response<ProxyBody> {
    let mut resp = if hcm.http_filters.is_empty() {
        forward(req, conn, hcm, &routed, started, buffer_limit, origin).await
    } else {
        let (mut parts, body) = req.into_parts();
        let cluster = Some(&*routed.choice.name).filter(|n| !n.is_empty());
        let decoded = filters::decode(
            &hcm.http_filters,
            overrides,
            &mut parts,
            cluster,
            &conn.stats,
        )
        .await;
        let mut resp = match decoded.reply {
            Some(reply) => reply,
            None => {
                let req = Request::from_parts(parts, body);
                forward(req, conn, hcm, &routed, started, buffer_limit, origin).await
            }
        };
        filters::encode(&decoded.state, &mut resp);
        resp
    };
    // Route-level response header changes apply to every response of the
    // route, local replies included, as Envoy's router does.
    routed
        .matched
        .apply_response_headers_for(resp.headers_mut(), Some(&routed.choice));
    resp
}

/// Methods whose requests Envoy sends with `content-length: 0` when they
/// have no body (it leaves GET, HEAD, DELETE, CONNECT and TRACE bare).
fn needs_zero_length(method: &http::Method) -> bool {
    !matches!(
        *method,
        http::Method::GET
            | http::Method::HEAD
            | http::Method::DELETE
            | http::Method::CONNECT
            | http::Method::TRACE
    )
}

type Prepared = (Option<Arc<strait_codec::Progress>>, Request<Body>);

/// Turns the downstream request into the upstream one: origin-form URI for
/// HTTP/1.1 (absolute for HTTP/2), hop-by-hop headers removed, Envoy's
/// request headers added.
fn upstream_request(
    req: Request<Incoming>,
    hcm: &HttpConnectionManager,
    expected_timeout: Option<std::time::Duration>,
    routed: &Routed<'_>,
    h2: bool,
    upgrade: bool,
) -> Result<Prepared, BadRequest> {
    let (mut parts, body) = req.into_parts();
    let original = parts.uri.path_and_query().cloned();
    let rewritten_to = routed
        .rewritten
        .as_deref()
        .and_then(|p| PathAndQuery::try_from(p).ok());
    let path = rewritten_to
        .clone()
        .or_else(|| original.clone())
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let h = &mut parts.headers;
    headers::strip_hop_by_hop(h, upgrade);
    routed
        .matched
        .apply_request_headers_for(h, Some(&routed.choice));
    if let HostAction::Set(host) = &routed.host {
        // Envoy tells the upstream what the host was before the rewrite.
        let before = match parts.uri.authority() {
            Some(a) => HeaderValue::from_str(a.as_str()).ok(),
            None => h.get(header::HOST).cloned(),
        };
        if let Some(before) = before {
            h.insert(X_ORIGINAL_HOST.clone(), before);
        }
        h.insert(header::HOST, host.clone());
        if let Some(mut uri_parts) = Some(parts.uri.clone().into_parts())
            && uri_parts.authority.is_some()
            && let Ok(a) = http::uri::Authority::try_from(host.as_bytes())
        {
            uri_parts.authority = Some(a);
            if let Ok(uri) = Uri::from_parts(uri_parts) {
                parts.uri = uri;
            }
        }
    }
    if rewritten_to.is_some()
        && let Some(v) = original.and_then(|o| HeaderValue::from_str(o.as_str()).ok())
    {
        // Envoy records the path before a rewrite for the upstream.
        h.insert(X_ORIGINAL_PATH.clone(), v);
    }
    // Envoy answers `Expect: 100-continue` itself (hyper sends the 100 when
    // the body is first read), so the upstream must not be asked again.
    h.remove(header::EXPECT);
    if hcm.generate_request_id && !h.contains_key(&X_REQUEST_ID) {
        h.insert(X_REQUEST_ID.clone(), headers::request_id());
    }
    match expected_timeout {
        Some(t) => {
            let ms = u64::try_from(t.as_millis()).unwrap_or(u64::MAX);
            h.insert(X_EXPECTED_TIMEOUT.clone(), HeaderValue::from(ms));
        }
        None => {
            h.remove(&X_EXPECTED_TIMEOUT);
        }
    }
    if h2 {
        // HTTP/2 carries the host as :authority, taken from the URI.
        let authority = match parts.uri.authority() {
            Some(a) => a.clone(),
            None => h
                .get(header::HOST)
                .and_then(|v| http::uri::Authority::try_from(v.as_bytes()).ok())
                .ok_or(BadRequest)?,
        };
        h.remove(header::HOST);
        parts.version = Version::HTTP_2;
        let uri = Uri::builder()
            .scheme("http")
            .authority(authority)
            .path_and_query(path)
            .build();
        parts.uri = uri.map_err(|_| BadRequest)?;
    } else {
        if !h.contains_key(header::HOST) {
            // HTTP/2 downstream or absolute form: Host comes from :authority.
            let v = parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
                .ok_or(BadRequest)?;
            h.insert(header::HOST, v);
        }
        parts.version = Version::HTTP_11;
        parts.uri = Uri::from(path);
    }
    let (done, body) = if http_body::Body::is_end_stream(&body) {
        if !h2
            && needs_zero_length(&parts.method)
            && !parts.headers.contains_key(header::CONTENT_LENGTH)
        {
            // As Envoy's HTTP/1 codec does: a bodiless request whose method
            // may carry a body says so explicitly.
            parts
                .headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        }
        (None, Body::Empty)
    } else {
        let progress = strait_codec::Progress::new();
        (Some(Arc::clone(&progress)), Body::streaming(body, progress))
    };
    Ok((done, Request::from_parts(parts, body)))
}

/// The request cannot be expressed upstream (e.g. no usable authority).
#[derive(Debug)]
struct BadRequest;

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
        return Some(refused(http::StatusCode::UPGRADE_REQUIRED));
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
        return Some(refused(http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE));
    }
    None
}

fn bad_request() -> Response<ProxyBody> {
    refused(http::StatusCode::BAD_REQUEST)
}

/// A local answer to a request the proxy could not make sense of. The
/// connection closes after it (HTTP/1.x; hyper drops the header on HTTP/2),
/// so bytes that followed a refused request are never read as a request of
/// their own.
fn refused(status: http::StatusCode) -> Response<ProxyBody> {
    let mut r = Response::new(ProxyBody::local(""));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// For an ORIGINAL_DST cluster, where this request goes: the `ip:port` in
/// the cluster's header when `use_http_header` is set and the header
/// parses, else the connection's original destination. `None` for other
/// clusters.
fn original_destination(
    cluster: &strait_upstream::Cluster,
    headers: &http::HeaderMap,
    dst: SocketAddr,
) -> Option<SocketAddr> {
    match &cluster.spec().discovery {
        strait_model::Discovery::OriginalDst {
            use_http_header,
            http_header_name,
        } => Some(
            use_http_header
                .then(|| headers.get(http_header_name.as_str()))
                .flatten()
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(dst),
        ),
        _ => None,
    }
}
