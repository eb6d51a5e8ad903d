//! What one access-log entry knows: a request (HTTP), a connection (TCP
//! proxy) or a connection the listener closed before a filter chain took
//! it. Borrowed from the path that logs it, so building one copies
//! nothing; the path gathers only what its loggers read.

use std::{
    net::SocketAddr,
    sync::OnceLock,
    time::{Duration, SystemTime},
};

use http::{HeaderMap, Method, Uri, Version};
use strait_model::access_log::{HeaderKey, HeaderRef};

use crate::DynamicMetadata;

/// A request's head as the log reads it: after the connection manager's
/// own changes (`x-request-id`, `x-forwarded-for`), before the router's.
#[derive(Debug, Clone)]
pub struct RequestHead {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
}

impl RequestHead {
    /// `%REQ(name)%`: a header's value, or the request line's `:path`,
    /// `:method`, `:authority` (the URI's, else `Host`) or `:scheme`.
    pub fn header(&self, name: &str) -> Option<&str> {
        match name {
            ":path" => self.uri.path_and_query().map(|p| p.as_str()),
            ":method" => Some(self.method.as_str()),
            ":authority" => self
                .uri
                .authority()
                .map(|a| a.as_str())
                .or_else(|| value(&self.headers, "host")),
            ":scheme" => self.uri.scheme_str(),
            _ => value(&self.headers, name),
        }
    }
}

impl RequestHead {
    /// [`RequestHead::header`] for a name resolved at config time.
    pub fn header_ref(&self, h: &HeaderRef) -> Option<&str> {
        match h.key() {
            HeaderKey::Path => self.uri.path_and_query().map(|p| p.as_str()),
            HeaderKey::Method => Some(self.method.as_str()),
            HeaderKey::Authority => self.uri.authority().map(|a| a.as_str()).or_else(|| {
                self.headers
                    .get(http::header::HOST)
                    .and_then(|v| v.to_str().ok())
            }),
            HeaderKey::Scheme => self.uri.scheme_str(),
            HeaderKey::Name(n) => first(&self.headers, n),
            HeaderKey::Invalid => None,
        }
    }
}

/// The first value of `n` in `h`, when it is text. The maps a log keeps
/// hold only the few headers its formats name: a scan of those is cheaper
/// than hashing the name.
fn first<'a>(h: &'a HeaderMap, n: &http::HeaderName) -> Option<&'a str> {
    let v = if h.len() <= 8 {
        h.iter().find(|(k, _)| *k == n).map(|(_, v)| v)
    } else {
        h.get(n)
    };
    v.and_then(|v| v.to_str().ok())
}

/// The first value of `h` in a response's headers or trailers, when it is
/// text (the request line's pseudo-headers are not there).
pub fn value_ref<'a>(headers: &'a HeaderMap, h: &HeaderRef) -> Option<&'a str> {
    match h.key() {
        HeaderKey::Name(n) => first(headers, n),
        _ => None,
    }
}

/// The first value of `name`, when it is text.
pub fn value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// One entry's facts. `None` is Envoy's "no value" (`-` in text, `null`
/// in JSON).
#[derive(Debug, Clone)]
pub struct Record<'a> {
    /// The connection manager's trace decision was forced by
    /// `x-envoy-force-trace` (what Envoy's `traceable_filter` matches:
    /// traced for that reason, not sampled).
    pub trace_forced: bool,
    /// When the request (or connection) started, for `%START_TIME%`.
    pub start: SystemTime,
    pub duration: Option<Duration>,
    /// Until the last byte of the request was received.
    pub request_duration: Option<Duration>,
    /// Until the first byte of the upstream's response.
    pub response_duration: Option<Duration>,
    /// From the first upstream response byte to the last byte sent down.
    pub response_tx_duration: Option<Duration>,
    /// The downstream protocol; `None` for TCP.
    pub protocol: Option<Version>,
    pub request: Option<&'a RequestHead>,
    pub response_headers: Option<&'a HeaderMap>,
    pub response_trailers: Option<&'a HeaderMap>,
    /// 0 when there is no response (TCP, listener).
    pub status: u16,
    /// Envoy's short response flags joined by `,` (`UF,URX`); empty for
    /// none.
    pub flags: &'a str,
    pub details: Option<&'a str>,
    /// The transport failure reason, spaces and all (`%UPSTREAM_TRANSPORT_
    /// FAILURE_REASON%` prints them as `_`).
    pub transport_failure: Option<&'a str>,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub upstream_cluster: Option<&'a str>,
    pub upstream_host: Option<SocketAddr>,
    pub upstream_local: Option<SocketAddr>,
    pub attempts: Option<u32>,
    pub downstream_local: SocketAddr,
    /// The client: the peer, or the address the connection manager trusts
    /// from `x-forwarded-for`.
    pub downstream_remote: SocketAddr,
    pub downstream_direct_remote: SocketAddr,
    pub server_name: Option<&'a str>,
    pub route_name: Option<&'a str>,
    pub peer_uri_san: Option<&'a str>,
    pub local_uri_san: Option<&'a str>,
    pub metadata: Option<&'a DynamicMetadata>,
    /// The body of a local reply (for `local_reply_config` formats).
    pub local_reply_body: Option<&'a [u8]>,
}

impl<'a> Record<'a> {
    /// A record of a connection from `remote` to `local` that started at
    /// `start`, knowing nothing else yet.
    pub fn new(start: SystemTime, local: SocketAddr, remote: SocketAddr) -> Self {
        Record {
            start,
            duration: None,
            request_duration: None,
            response_duration: None,
            response_tx_duration: None,
            protocol: None,
            request: None,
            response_headers: None,
            response_trailers: None,
            status: 0,
            flags: "",
            details: None,
            transport_failure: None,
            bytes_received: 0,
            bytes_sent: 0,
            upstream_cluster: None,
            upstream_host: None,
            upstream_local: None,
            attempts: None,
            downstream_local: local,
            downstream_remote: remote,
            downstream_direct_remote: remote,
            server_name: None,
            route_name: None,
            peer_uri_san: None,
            local_uri_san: None,
            metadata: None,
            local_reply_body: None,
            trace_forced: false,
        }
    }

    /// The request's `x-request-id`, for `runtime_filter`.
    pub(crate) fn request_id(&self) -> Option<&str> {
        self.request.and_then(|r| value(&r.headers, "x-request-id"))
    }
}

/// Envoy's response flags: short and long names.
pub const RESPONSE_FLAGS: &[(&str, &str)] = &[
    ("LH", "FailedLocalHealthCheck"),
    ("UH", "NoHealthyUpstream"),
    ("UT", "UpstreamRequestTimeout"),
    ("LR", "LocalReset"),
    ("UR", "UpstreamRemoteReset"),
    ("UF", "UpstreamConnectionFailure"),
    ("UC", "UpstreamConnectionTermination"),
    ("UO", "UpstreamOverflow"),
    ("NR", "NoRouteFound"),
    ("DI", "DelayInjected"),
    ("FI", "FaultInjected"),
    ("RL", "RateLimited"),
    ("UAEX", "UnauthorizedExternalService"),
    ("RLSE", "RateLimitServiceError"),
    ("DC", "DownstreamConnectionTermination"),
    ("URX", "UpstreamRetryLimitExceeded"),
    ("SI", "StreamIdleTimeout"),
    ("IH", "InvalidEnvoyRequestHeaders"),
    ("DPE", "DownstreamProtocolError"),
    ("UMSDR", "UpstreamMaxStreamDurationReached"),
    ("RFCF", "ResponseFromCacheFilter"),
    ("NFCF", "NoFilterConfigFound"),
    ("DT", "DurationTimeout"),
    ("UPE", "UpstreamProtocolError"),
    ("NC", "NoClusterFound"),
    ("OM", "OverloadManagerTerminated"),
    ("DF", "DnsResolutionFailed"),
    ("DO", "DropOverload"),
    ("DR", "DownstreamRemoteReset"),
    ("UDO", "UnconditionalDropOverload"),
];

/// The long name of a short response flag (the short one if unknown).
pub fn long_flag(short: &str) -> &str {
    RESPONSE_FLAGS
        .iter()
        .find(|(s, _)| *s == short)
        .map_or(short, |(_, l)| l)
}

/// `%HOSTNAME%`: the kernel's host name (what `gethostname` returns), read
/// once.
pub fn hostname() -> Option<&'static str> {
    static NAME: OnceLock<Option<String>> = OnceLock::new();
    NAME.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    })
    .as_deref()
}
