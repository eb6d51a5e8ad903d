//! The one place a locally generated response is made: router and
//! connection-manager errors ([`LocalReply`]), request refusals, direct
//! responses and filter answers ([`Reply`]) alike. Statuses, bodies,
//! response flags and response code details are Envoy's, so clients and
//! dashboards written for Envoy read them the same way.

use std::borrow::Cow;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, header};
use strait_codec::Body;

use crate::body::ProxyBody;

/// A local response before it is sent: what a filter returns to answer a
/// request, and what every other local answer becomes. Carries Envoy's
/// response flag (`%RESPONSE_FLAGS%`, e.g. `FI`; empty for none) and
/// response code details (`%RESPONSE_CODE_DETAILS%`).
#[derive(Debug)]
pub struct Reply {
    status: StatusCode,
    body: Bytes,
    headers: HeaderMap,
    flag: &'static str,
    details: Cow<'static, str>,
    close: bool,
}

/// The flag and details of a local response, in its extensions, for the
/// access log and the stats that read them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyInfo {
    pub flag: &'static str,
    /// Mostly a fixed string; a filter may name what it matched (RBAC's
    /// `rbac_access_denied_matched_policy[<policy>]`).
    pub details: Cow<'static, str>,
}

impl Reply {
    /// An empty answer with `status` and no flag.
    pub fn new(status: StatusCode) -> Self {
        Reply {
            status,
            body: Bytes::new(),
            headers: HeaderMap::new(),
            flag: "",
            details: Cow::Borrowed(""),
            close: false,
        }
    }

    /// The body (sent as `text/plain` unless a header says otherwise).
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// All of `headers`, replacing any of the same names.
    pub fn headers(mut self, headers: HeaderMap) -> Self {
        if self.headers.is_empty() {
            self.headers = headers;
        } else {
            self.headers.extend(headers);
        }
        self
    }

    /// Envoy's response flag, e.g. `FI` for a fault abort.
    pub fn flag(mut self, flag: &'static str) -> Self {
        self.flag = flag;
        self
    }

    /// Envoy's response code details, e.g. `fault_filter_abort`.
    pub fn details(mut self, details: impl Into<Cow<'static, str>>) -> Self {
        self.details = details.into();
        self
    }

    /// Close the connection after this answer (HTTP/1.x): what follows
    /// the request cannot be trusted or waited for.
    pub fn close(mut self) -> Self {
        self.close = true;
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The response, logged with its flag and details.
    pub fn response(self) -> Response<ProxyBody> {
        tracing::debug!(
            response_flags = self.flag,
            details = %self.details,
            status = self.status.as_u16(),
            "local reply"
        );
        let Reply {
            status,
            body,
            mut headers,
            flag,
            details,
            close,
        } = self;
        if !body.is_empty() && !headers.contains_key(header::CONTENT_TYPE) {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        }
        if close {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        let body = if body.is_empty() {
            Body::Empty
        } else {
            Body::full(body)
        };
        let mut resp = Response::new(ProxyBody::Local(body));
        *resp.status_mut() = status;
        *resp.headers_mut() = headers;
        resp.extensions_mut().insert(ReplyInfo { flag, details });
        resp
    }
}

/// Why the proxy answered instead of the upstream. Each carries Envoy's
/// response flag (the access-log `%RESPONSE_FLAGS%` short form).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LocalReply {
    /// NR: no virtual host or route matched.
    NoRoute,
    /// NC: the route names a cluster that does not exist.
    NoCluster,
    /// UH: the cluster has no host to send to.
    NoHealthyUpstream,
    /// UF: the upstream connection could not be made.
    ConnectFailure,
    /// UC: the upstream connection closed before response headers.
    UpstreamReset,
    /// UO: a circuit breaker of the cluster is open.
    Overflow,
    /// UT: the route timeout elapsed before the response headers.
    UpstreamTimeout,
    /// The downstream request body was malformed (e.g. a bad chunk size) or
    /// cut off; the upstream request was aborted.
    BadRequestBody,
    /// The route's `max_stream_duration` elapsed before the response.
    StreamDurationTimeout,
    /// The whole request was not received within `request_timeout`.
    RequestTimeout,
    /// SI: no activity on the stream for the stream idle timeout before the
    /// response head.
    StreamIdleTimeout,
    /// An `Upgrade` the connection manager is not configured for.
    UpgradeRefused,
    /// The listener was removed while this connection was open.
    ListenerDraining,
}

impl LocalReply {
    pub(crate) fn status(self) -> StatusCode {
        match self {
            LocalReply::NoRoute => StatusCode::NOT_FOUND,
            LocalReply::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            LocalReply::RequestTimeout
            | LocalReply::StreamDurationTimeout
            | LocalReply::StreamIdleTimeout => StatusCode::REQUEST_TIMEOUT,
            LocalReply::BadRequestBody => StatusCode::BAD_REQUEST,
            LocalReply::UpgradeRefused => StatusCode::FORBIDDEN,
            LocalReply::NoCluster
            | LocalReply::NoHealthyUpstream
            | LocalReply::ConnectFailure
            | LocalReply::UpstreamReset
            | LocalReply::Overflow
            | LocalReply::ListenerDraining => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub(crate) fn body(self) -> &'static str {
        match self {
            LocalReply::NoRoute | LocalReply::NoCluster | LocalReply::UpgradeRefused => "",
            LocalReply::NoHealthyUpstream => "no healthy upstream",
            // Envoy 1.40 says "remote connection failure" for a refused
            // or unreachable upstream.
            LocalReply::ConnectFailure => {
                "upstream connect error or disconnect/reset before headers. reset reason: remote connection failure"
            }
            LocalReply::UpstreamReset => {
                "upstream connect error or disconnect/reset before headers. reset reason: connection termination"
            }
            LocalReply::Overflow => {
                "upstream connect error or disconnect/reset before headers. reset reason: overflow"
            }
            LocalReply::UpstreamTimeout => "upstream request timeout",
            LocalReply::RequestTimeout => "request timeout",
            LocalReply::StreamDurationTimeout => "downstream duration timeout",
            LocalReply::StreamIdleTimeout => "stream timeout",
            LocalReply::BadRequestBody => "",
            LocalReply::ListenerDraining => "listener draining",
        }
    }

    pub(crate) fn flag(self) -> &'static str {
        match self {
            LocalReply::NoRoute => "NR",
            LocalReply::NoCluster => "NC",
            LocalReply::NoHealthyUpstream => "UH",
            LocalReply::ConnectFailure => "UF",
            LocalReply::UpstreamReset => "UC",
            LocalReply::Overflow => "UO",
            LocalReply::UpstreamTimeout => "UT",
            LocalReply::RequestTimeout | LocalReply::StreamDurationTimeout => "DT",
            LocalReply::StreamIdleTimeout => "SI",
            LocalReply::BadRequestBody => "DPE",
            LocalReply::UpgradeRefused => "UPE",
            LocalReply::ListenerDraining => "DC",
        }
    }

    /// Envoy's response code details for this reply.
    pub(crate) fn details(self) -> &'static str {
        match self {
            LocalReply::NoRoute => "route_not_found",
            LocalReply::NoCluster => "cluster_not_found",
            LocalReply::NoHealthyUpstream => "no_healthy_upstream",
            LocalReply::ConnectFailure => {
                "upstream_reset_before_response_started{remote_connection_failure}"
            }
            LocalReply::UpstreamReset => {
                "upstream_reset_before_response_started{connection_termination}"
            }
            LocalReply::Overflow => "upstream_reset_before_response_started{overflow}",
            LocalReply::UpstreamTimeout => "response_timeout",
            LocalReply::RequestTimeout => "request_overall_timeout",
            LocalReply::StreamDurationTimeout => "max_duration_timeout",
            LocalReply::StreamIdleTimeout => "stream_idle_timeout",
            LocalReply::BadRequestBody => "downstream_remote_disconnect",
            LocalReply::UpgradeRefused => "upgrade_failed",
            LocalReply::ListenerDraining => "listener_draining",
        }
    }

    pub(crate) fn response(self) -> Response<ProxyBody> {
        Reply::from(self).response()
    }
}

impl From<LocalReply> for Reply {
    fn from(r: LocalReply) -> Reply {
        let reply = Reply::new(r.status())
            .body(r.body())
            .flag(r.flag())
            .details(r.details());
        if matches!(
            r,
            LocalReply::BadRequestBody | LocalReply::RequestTimeout | LocalReply::StreamIdleTimeout
        ) {
            // The rest of the request body cannot be trusted or waited for.
            reply.close()
        } else {
            reply
        }
    }
}

/// Whether a request is gRPC as Envoy tells: `content-type`
/// `application/grpc`, alone or with a `+codec` or `;parameters` suffix
/// (gRPC-Web is not).
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("application/grpc"))
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['+', ';']))
}

/// Envoy's gRPC status for an HTTP status (`Grpc::Utility::httpToGrpcStatus`).
fn grpc_status_of(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "13",
        401 => "16",
        403 => "7",
        404 => "12",
        429 | 502 | 503 | 504 => "14",
        _ => "2",
    }
}

/// A local reply to a gRPC request as Envoy sends it: trailers-only, HTTP
/// 200, `content-type: application/grpc`, the status mapped to
/// `grpc-status` and the body (percent-encoded) as `grpc-message`. A reply
/// that already carries `grpc-status` (a fault abort's) keeps it.
pub(crate) fn grpc_local_reply(resp: &mut Response<ProxyBody>) {
    let Some(body) = local_body(resp.body_mut()).map(std::mem::take) else {
        return;
    };
    let h = resp.headers_mut();
    if !h.contains_key("grpc-status") {
        let status = resp.status();
        let text = match &body {
            Body::Full(Some(b)) => percent_encode(b),
            _ => String::new(),
        };
        let h = resp.headers_mut();
        h.insert(
            "grpc-status",
            HeaderValue::from_static(grpc_status_of(status)),
        );
        if !text.is_empty()
            && let Ok(v) = HeaderValue::from_str(&text)
        {
            h.insert("grpc-message", v);
        }
    }
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.remove(header::CONTENT_LENGTH);
    *resp.status_mut() = StatusCode::OK;
}

/// A local reply's own body, under any filters that watch or change it.
fn local_body(b: &mut ProxyBody) -> Option<&mut Body> {
    match b {
        ProxyBody::Local(b) => Some(b),
        ProxyBody::Filtered(inner, _) | ProxyBody::Observed(inner, _) => local_body(inner),
        ProxyBody::Upstream(..) => None,
    }
}

/// Envoy's `PercentEncoding::encode` of a `grpc-message`: bytes outside
/// printable ASCII, and `%`, as `%XX`.
fn percent_encode(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    for &c in b {
        if (b' '..=b'~').contains(&c) && c != b'%' {
            out.push(char::from(c));
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}
