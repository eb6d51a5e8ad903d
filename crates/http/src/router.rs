//! The router's attempt loop: pick a host, lease a connection, send, and
//! retry as the plan allows, all under the route's deadline.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use http::{HeaderMap, HeaderValue, Method, Request, Response, Uri, Version};
use strait_codec::{Body, RecordingWatch};
use strait_tls::ApplicationProtocols;
use strait_upstream::{
    Cluster, LbContext, Lease, PooledBody, RetryGuard, RoutingPriority, UpstreamError,
};

use crate::{
    access_log::UpstreamFacts,
    local_reply::LocalReply,
    retry::{ATTEMPT_COUNT, Failure, Plan},
};

/// What the loop needs besides the request.
#[derive(Debug)]
pub(crate) struct Attempts<'a> {
    pub(crate) cluster: &'a Arc<Cluster>,
    pub(crate) plan: Plan<'a>,
    /// The route's `hash_policy` result, for hashing balancers.
    pub(crate) hash: Option<u64>,
    /// The virtual host's `include_request_attempt_count`.
    pub(crate) attempt_count: bool,
    /// The route's `auto_host_rewrite`: each attempt's Host becomes the
    /// chosen upstream host's DNS name (when it has one).
    pub(crate) auto_host: bool,
    /// The request body's copy, when it may be sent again; `None` for a
    /// request without a body.
    pub(crate) recording: Option<RecordingWatch>,
    /// ORIGINAL_DST clusters: the one destination every attempt goes to.
    pub(crate) original_dst: Option<SocketAddr>,
    /// The ALPN override a filter set (`istio.alpn`): every attempt's
    /// connection offered it.
    pub(crate) alpn: Option<&'a ApplicationProtocols>,
    /// Where the attempts went, for the access log and the reply's details.
    pub(crate) facts: &'a mut UpstreamFacts,
}

/// The parts of a request needed to send it again.
struct Template {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
}

/// Sends `req`, retrying per `a.plan`, until a response to hand back or a
/// local reply. `deadline` resolves with the reply to send when the
/// request's own timers fire (route timeout, `request_timeout`, a broken
/// downstream body); it bounds every attempt and back-off. Allocates only
/// when retries are possible (a copy of the head, the hosts tried).
pub(crate) async fn send(
    mut a: Attempts<'_>,
    req: Request<Body>,
    deadline: impl Future<Output = LocalReply>,
) -> Result<Response<PooledBody>, LocalReply> {
    tokio::pin!(deadline);
    let template = (a.plan.max_retries > 0).then(|| Template {
        method: req.method().clone(),
        uri: req.uri().clone(),
        version: req.version(),
        headers: req.headers().clone(),
    });
    let mut next = Some(req);
    let mut tried: Vec<SocketAddr> = Vec::new();
    let mut attempt: u32 = 1;
    let mut retry_guard: Option<RetryGuard> = None;
    loop {
        let _in_flight = &retry_guard;
        let Some(mut req) = next.take() else {
            // Invariant: `next` is refilled before every further attempt.
            return Err(LocalReply::UpstreamReset);
        };
        if a.attempt_count {
            req.headers_mut()
                .insert(ATTEMPT_COUNT.clone(), HeaderValue::from(attempt));
        }
        let Some(host) = pick(&a, &tried) else {
            return Err(LocalReply::NoHealthyUpstream);
        };
        a.facts.attempts = attempt;
        a.facts.host = Some(host.addr());
        a.facts.local = None;
        a.facts.failure = None;
        if a.plan.policy.avoid_previous_hosts && a.plan.max_retries > 0 {
            tried.push(host.addr());
        }
        if a.auto_host && !host.hostname().is_empty() {
            set_host(&mut req, host.hostname());
        }
        let one = one_attempt(
            a.cluster,
            host,
            req,
            a.plan.per_try_timeout,
            a.alpn,
            &mut *a.facts,
        );
        let outcome = tokio::select! {
            biased;
            reply = &mut deadline => {
                if reply == LocalReply::UpstreamTimeout {
                    Lease::count_timeout(a.cluster);
                }
                return Err(reply);
            }
            o = one => o,
        };
        let wants_retry = match &outcome {
            Ok(resp) => a.plan.retry_response(resp),
            Err(f) => a.plan.retry_failure(*f),
        };
        if !wants_retry {
            if attempt > 1 {
                stat(a.cluster, "envoy_cluster_upstream_rq_retry_success");
            }
            return finish(a.cluster, outcome);
        }
        if attempt > a.plan.max_retries {
            if a.plan.max_retries > 0 {
                stat(a.cluster, "envoy_cluster_upstream_rq_retry_limit_exceeded");
            }
            return finish(a.cluster, outcome);
        }
        let Some(t) = &template else {
            return finish(a.cluster, outcome);
        };
        // The cluster's retry circuit breaker (`max_retries` or its retry
        // budget) may refuse; the guard is held while the retry runs.
        let Some(guard) = a.cluster.try_retry(RoutingPriority::Default) else {
            return finish(a.cluster, outcome);
        };
        retry_guard = Some(guard);
        // The body must have been kept whole; waiting for it is bounded by
        // the deadline like everything else.
        let body = match a.recording.as_mut() {
            None => Body::Empty,
            Some(w) => {
                let kept = tokio::select! {
                    biased;
                    reply = &mut deadline => return Err(reply),
                    k = w.wait_for(Option::is_some) => k.ok().and_then(|k| k.clone()).flatten(),
                };
                match kept {
                    Some(frames) => Body::replay(frames),
                    None => return finish(a.cluster, outcome),
                }
            }
        };
        // The failed attempt's response (and its connection) goes now.
        drop(outcome);
        let wait = a.plan.back_off(attempt, rand::random());
        tokio::select! {
            biased;
            reply = &mut deadline => return Err(reply),
            () = tokio::time::sleep(wait) => {}
        }
        stat(a.cluster, "envoy_cluster_upstream_rq_retry");
        attempt += 1;
        let mut again = Request::new(body);
        *again.method_mut() = t.method.clone();
        *again.uri_mut() = t.uri.clone();
        *again.version_mut() = t.version;
        *again.headers_mut() = t.headers.clone();
        next = Some(again);
    }
}

/// A host for this attempt: with the previous-hosts predicate, up to
/// `host_selection_retry_max_attempts` picks are made to find a new one.
fn pick(a: &Attempts<'_>, tried: &[SocketAddr]) -> Option<Arc<strait_upstream::Host>> {
    if let Some(dst) = a.original_dst {
        return Some(a.cluster.original_dst_host(dst));
    }
    let ctx = LbContext {
        hash: a.hash,
        avoid: tried,
    };
    let mut host = a.cluster.pick_with(&ctx)?;
    for _ in 1..a.plan.policy.host_selection_max_attempts {
        if !tried.contains(&host.addr()) {
            break;
        }
        host = a.cluster.pick_with(&ctx)?;
    }
    Some(host)
}

/// One attempt; `facts` gets the connection's local address, or why the
/// connection could not be made.
async fn one_attempt(
    cluster: &Arc<Cluster>,
    host: Arc<strait_upstream::Host>,
    req: Request<Body>,
    per_try: Option<Duration>,
    alpn: Option<&ApplicationProtocols>,
    facts: &mut UpstreamFacts,
) -> Result<Response<PooledBody>, Failure> {
    let go = async {
        // The request is already in the upstream's version (HTTP/2 exactly
        // when the cluster, or the downstream it mirrors, says so).
        let h2 = req.version() == Version::HTTP_2;
        let leased = cluster.lease_offering(host, RoutingPriority::Default, h2, alpn);
        let lease = match leased.await {
            Ok(l) => l,
            Err(e) => {
                facts.failure = e.transport_failure_reason();
                return Err(failure(e));
            }
        };
        facts.local = lease.local_addr();
        facts.peer_uri_san = lease.peer_uri_san().cloned();
        lease.send(req).await.map_err(failure)
    };
    match per_try {
        None => go.await,
        Some(limit) => match tokio::time::timeout(limit, go).await {
            Ok(r) => r,
            Err(_) => {
                Lease::count_timeout(cluster);
                Err(Failure::PerTryTimeout)
            }
        },
    }
}

fn failure(e: UpstreamError) -> Failure {
    if e.is_connect_failure() {
        Failure::Connect
    } else if matches!(e, UpstreamError::Overflow) {
        Failure::Overflow
    } else if refused_stream(&e) {
        Failure::RefusedStream
    } else if matches!(&e, UpstreamError::Reset(h) if h.is_canceled()) {
        // hyper cancels a request it never wrote: the connection closed
        // before it (Envoy's "reset before request").
        Failure::ResetBeforeRequest
    } else {
        Failure::Reset
    }
}

/// An HTTP/2 `REFUSED_STREAM` reset anywhere in the error's causes.
fn refused_stream(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.downcast_ref::<h2::Error>()
            .is_some_and(|h| h.reason() == Some(h2::Reason::REFUSED_STREAM))
        {
            return true;
        }
        cause = c.source();
    }
    false
}

fn finish(
    _cluster: &Arc<Cluster>,
    outcome: Result<Response<PooledBody>, Failure>,
) -> Result<Response<PooledBody>, LocalReply> {
    outcome.map_err(|f| match f {
        Failure::Connect => LocalReply::ConnectFailure,
        Failure::PerTryTimeout => LocalReply::UpstreamTimeout,
        Failure::Overflow => LocalReply::Overflow,
        Failure::Reset | Failure::ResetBeforeRequest | Failure::RefusedStream => {
            LocalReply::UpstreamReset
        }
    })
}

/// Bumps a retry counter of the cluster. Looked up by name each time: this
/// runs only on the retry path, never for a request that is not retried.
fn stat(cluster: &Cluster, name: &'static str) {
    cluster.counter(name).increment(1);
}

/// Sets the request's host: the `Host` header for HTTP/1.1, the URI's
/// authority for HTTP/2 (which the codec sends as `:authority`).
fn set_host(req: &mut Request<Body>, host: &str) {
    let before = match req.uri().authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).ok(),
        None => req.headers().get(http::header::HOST).cloned(),
    };
    if let Some(before) = before {
        // Envoy tells the upstream what the host was before the rewrite.
        req.headers_mut().insert(
            http::HeaderName::from_static("x-envoy-original-host"),
            before,
        );
    }
    if req.version() == Version::HTTP_2 {
        let mut parts = req.uri().clone().into_parts();
        if let Ok(a) = http::uri::Authority::try_from(host) {
            parts.authority = Some(a);
            if let Ok(uri) = Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
        }
    } else if let Ok(v) = HeaderValue::from_str(host) {
        req.headers_mut().insert(http::header::HOST, v);
    }
}
