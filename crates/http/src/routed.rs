//! What routing decided for one request, and what the rest of its path
//! shares: the leaf types the connection manager (`request`) hands to the
//! router (`forward`).

use std::time::{Duration, Instant};

use http::{HeaderValue, Response};
use strait_model::{ForwardAction, HttpConnectionManager};
use strait_route::{Choice, HostRewriteOutcome, Matched, RequestView, StreamDuration};

use crate::{body::ProxyBody, conn::ConnCtx, edge, local_reply::Reply};

/// What one request's path through the connection manager and router
/// shares, decided once before routing.
#[derive(Clone, Copy)]
pub(crate) struct Stream<'a> {
    pub(crate) conn: &'a ConnCtx,
    pub(crate) hcm: &'a HttpConnectionManager,
    pub(crate) started: Instant,
    /// The listener's buffer limit: how much of a body may be kept for a
    /// retry or a mirror.
    pub(crate) buffer_limit: usize,
    pub(crate) origin: edge::Origin,
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
    pub(crate) fn new(
        matched: Matched<'t>,
        action: &'t ForwardAction,
        view: &RequestView<'_>,
    ) -> Self {
        // One choice per request: a weighted route's rotation advances
        // with each.
        let choice = matched.choice(view);
        let chosen = choice.as_ref().map(Choice::as_chosen);
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
            choice: choice.unwrap_or(Choice {
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

/// A request the proxy could not make sense of: 400.
pub(crate) fn bad_request() -> Response<ProxyBody> {
    refused(http::StatusCode::BAD_REQUEST, "http1.codec_error")
}

/// A local answer to a request the proxy could not make sense of. The
/// connection closes after it (HTTP/1.x; hyper drops the header on HTTP/2),
/// so bytes that followed a refused request are never read as a request of
/// their own.
/// Envoy's flag for these is `DPE` (downstream protocol error).
pub(crate) fn refused(status: http::StatusCode, details: &'static str) -> Response<ProxyBody> {
    Reply::new(status)
        .flag("DPE")
        .details(details)
        .close()
        .response()
}
