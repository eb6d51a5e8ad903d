//! The one place an error becomes a response. Statuses and bodies are Envoy's,
//! so clients and dashboards written for Envoy read them the same way.

use http::{HeaderValue, Response, StatusCode, header};

use crate::body::ProxyBody;

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
            LocalReply::ConnectFailure => {
                "upstream connect error or disconnect/reset before headers. reset reason: connection failure"
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

    pub(crate) fn response(self) -> Response<ProxyBody> {
        tracing::debug!(
            response_flags = self.flag(),
            status = self.status().as_u16(),
            "local reply"
        );
        let body = self.body();
        let mut resp = Response::new(ProxyBody::local(body));
        *resp.status_mut() = self.status();
        if !body.is_empty() {
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        }
        if matches!(
            self,
            LocalReply::BadRequestBody | LocalReply::RequestTimeout | LocalReply::StreamIdleTimeout
        ) {
            // The rest of the request body cannot be trusted or waited for.
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}
