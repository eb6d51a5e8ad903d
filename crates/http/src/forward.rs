//! The router's side of a request: from a routed request to the upstream
//! response (or the local reply that replaces it).

use std::{net::SocketAddr, sync::Arc};

use http::{HeaderName, HeaderValue, Request, Response, Uri, Version, header, uri::PathAndQuery};
use hyper_util::rt::TokioIo;
use strait_codec::{Body, FrameHook, headers};
use strait_model::HttpConnectionManager;
use strait_tls::ApplicationProtocols;

use crate::{
    access_log::UpstreamFacts,
    body::ProxyBody,
    buffer::DownstreamBody,
    hash,
    local_reply::LocalReply,
    mirror,
    retry::Plan,
    routed::{HostAction, Routed, Stream, bad_request},
    router, timeouts,
};

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_EXPECTED_TIMEOUT: HeaderName = HeaderName::from_static("x-envoy-expected-rq-timeout-ms");
static X_ORIGINAL_HOST: HeaderName = HeaderName::from_static("x-envoy-original-host");
static X_ORIGINAL_PATH: HeaderName = HeaderName::from_static("x-envoy-original-path");

/// Sends a routed request upstream (retries, mirrors, timeouts, upgrades)
/// and streams the response back.
/// `body_hook` passes the request body through the HTTP filters' body
/// steps (only for a chain that has such filters). `facts` learns where
/// the attempts went. `alpn` is the ALPN override the filters set: every
/// attempt goes out on a connection that offered it.
pub(crate) async fn forward(
    mut req: Request<DownstreamBody>,
    s: &Stream<'_>,
    routed: &Routed<'_>,
    body_hook: Option<Box<dyn FrameHook>>,
    facts: &mut UpstreamFacts,
    alpn: Option<&ApplicationProtocols>,
) -> Response<ProxyBody> {
    let Stream {
        conn,
        hcm,
        started,
        buffer_limit,
        origin,
    } = *s;
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
    facts.request_body.clone_from(&body_done);
    if let Some(hook) = body_hook
        && !matches!(up_req.body(), Body::Empty)
    {
        // Before the recording: a retry or mirror replays the filtered body.
        let body = std::mem::take(up_req.body_mut());
        *up_req.body_mut() = Body::hooked(body, hook);
    }
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
        alpn,
        facts,
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
        Err(LocalReply::ConnectFailure) => return connect_failure(facts),
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

/// Envoy 1.40's answer to an upstream connection that could not be made:
/// the transport's failure reason joins the details
/// (`upstream_reset_before_response_started{remote_connection_failure|
/// delayed_connect_error:_Connection_refused}`).
fn connect_failure(facts: &UpstreamFacts) -> Response<ProxyBody> {
    let reply = crate::local_reply::Reply::from(LocalReply::ConnectFailure);
    match &facts.failure {
        None => reply.response(),
        Some(reason) => reply
            .details(format!(
                "upstream_reset_before_response_started{{remote_connection_failure|{}}}",
                reason.replace(' ', "_")
            ))
            .response(),
    }
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
    req: Request<DownstreamBody>,
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
    // the body is first read), so the upstream must not be asked again;
    // with `proxy_100_continue` the upstream is asked. Strait's 100 still
    // goes out when it starts forwarding the body, not when the upstream's
    // arrives: hyper's server sends it on the body's first read (see
    // docs/CONFIG.md).
    if !hcm.proxy_100_continue {
        h.remove(header::EXPECT);
    }
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
    let progress = strait_codec::Progress::new();
    let upstream = body.into_upstream(|rest| Body::streaming(rest, Arc::clone(&progress)));
    let (done, body) = match upstream {
        None => {
            if !h2
                && needs_zero_length(&parts.method)
                && !parts.headers.contains_key(header::CONTENT_LENGTH)
            {
                // As Envoy's HTTP/1 codec does: a bodiless request whose
                // method may carry a body says so explicitly.
                parts
                    .headers
                    .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
            }
            (None, Body::Empty)
        }
        // Read into memory whole by a filter: nothing left to wait for.
        Some((body, false)) => (None, body),
        Some((body, true)) => (Some(progress), body),
    };
    Ok((done, Request::from_parts(parts, body)))
}

/// The request cannot be expressed upstream (e.g. no usable authority).
#[derive(Debug)]
struct BadRequest;

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
