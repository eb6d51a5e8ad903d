//! Envoy's gRPC access log service entries (`envoy.data.accesslog.v3`): a
//! [`Record`] turned into an `HTTPAccessLogEntry` (`http_grpc`) or a
//! `TCPAccessLogEntry` (`tcp_grpc`) as Envoy 1.40's loggers fill them
//! (the mapping taken from Envoy's own entries for the same requests, see
//! `tests/access_log_remote.rs`). Fields Strait does not know stay unset;
//! decision 0016 lists them.

use std::{net::SocketAddr, time::Duration};

use envoy_types::pb::{
    envoy::{
        config::core::v3::{Address, RequestMethod, SocketAddress, address, socket_address},
        data::accesslog::v3::{
            AccessLogCommon, AccessLogType, ConnectionProperties, HttpAccessLogEntry,
            HttpRequestProperties, HttpResponseProperties, ResponseFlags, TcpAccessLogEntry,
            http_access_log_entry::HttpVersion,
        },
    },
    google::protobuf::{Duration as ProtoDuration, Timestamp, UInt32Value},
};
use http::{HeaderMap, Method, Version};
use strait_access_log::{Record, RequestHead};
use strait_model::access_log::GrpcLog;

/// One entry, queued for its logger's stream. Boxed: an entry is ~2 KB
/// inline, and the queue's slots are allocated up front.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Entry {
    Http(Box<HttpAccessLogEntry>),
    Tcp(Box<TcpAccessLogEntry>),
}

impl Entry {
    pub(crate) fn encoded_len(&self) -> usize {
        use prost::Message as _;
        match self {
            Entry::Http(e) => e.encoded_len(),
            Entry::Tcp(e) => e.encoded_len(),
        }
    }
}

/// `r` as `log`'s kind of entry.
pub(crate) fn entry(log: &GrpcLog, r: &Record<'_>) -> Entry {
    match log.kind {
        strait_model::access_log::GrpcLogKind::Http => Entry::Http(Box::new(http_entry(log, r))),
        strait_model::access_log::GrpcLogKind::Tcp => Entry::Tcp(Box::new(tcp_entry(r))),
    }
}

fn address(a: SocketAddr) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: a.ip().to_string(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(
                a.port(),
            ))),
            ..SocketAddress::default()
        })),
    }
}

fn duration(d: Duration) -> ProtoDuration {
    ProtoDuration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

/// Envoy's `ResponseFlags` message from the short flags (`UF,URX`);
/// unset when there are none, as Envoy leaves it.
fn flags(short: &str) -> Option<ResponseFlags> {
    if short.is_empty() {
        return None;
    }
    let mut f = ResponseFlags::default();
    for flag in short.split(',').filter(|s| !s.is_empty()) {
        match flag {
            "LH" => f.failed_local_healthcheck = true,
            "UH" => f.no_healthy_upstream = true,
            "UT" => f.upstream_request_timeout = true,
            "LR" => f.local_reset = true,
            "UR" => f.upstream_remote_reset = true,
            "UF" => f.upstream_connection_failure = true,
            "UC" => f.upstream_connection_termination = true,
            "UO" => f.upstream_overflow = true,
            "NR" => f.no_route_found = true,
            "DI" => f.delay_injected = true,
            "FI" => f.fault_injected = true,
            "RL" => f.rate_limited = true,
            "UAEX" => {
                // Envoy's only reason: the external service refused.
                f.unauthorized_details = Some(
                    envoy_types::pb::envoy::data::accesslog::v3::response_flags::Unauthorized {
                        reason: 1,
                    },
                );
            }
            "RLSE" => f.rate_limit_service_error = true,
            "DC" => f.downstream_connection_termination = true,
            "URX" => f.upstream_retry_limit_exceeded = true,
            "SI" => f.stream_idle_timeout = true,
            "IH" => f.invalid_envoy_request_headers = true,
            "DPE" => f.downstream_protocol_error = true,
            "UMSDR" => f.upstream_max_stream_duration_reached = true,
            "RFCF" => f.response_from_cache_filter = true,
            "NFCF" => f.no_filter_config_found = true,
            "DT" => f.duration_timeout = true,
            "UPE" => f.upstream_protocol_error = true,
            "NC" => f.no_cluster_found = true,
            "OM" => f.overload_manager = true,
            "DF" => f.dns_resolution_failure = true,
            "DR" => f.downstream_remote_reset = true,
            // `DO`, `UDO`: the message has no field for them.
            _ => {}
        }
    }
    Some(f)
}

/// What both entries share.
fn common(r: &Record<'_>, kind: AccessLogType) -> AccessLogCommon {
    let start = r
        .start
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    AccessLogCommon {
        // `sample_rate` stays 0: Envoy 1.40's loggers leave it unset.
        downstream_remote_address: Some(address(r.downstream_remote)),
        downstream_local_address: Some(address(r.downstream_local)),
        downstream_direct_remote_address: Some(address(r.downstream_direct_remote)),
        start_time: Some(Timestamp {
            seconds: i64::try_from(start.as_secs()).unwrap_or(i64::MAX),
            nanos: i32::try_from(start.subsec_nanos()).unwrap_or(0),
        }),
        time_to_last_rx_byte: r.request_duration.map(duration),
        time_to_first_upstream_rx_byte: r.response_duration.map(duration),
        duration: r.duration.map(duration),
        upstream_remote_address: r.upstream_host.map(address),
        upstream_local_address: r.upstream_local.map(address),
        upstream_cluster: r.upstream_cluster.unwrap_or_default().to_owned(),
        response_flags: flags(r.flags),
        upstream_transport_failure_reason: r.transport_failure.unwrap_or_default().to_owned(),
        route_name: r.route_name.unwrap_or_default().to_owned(),
        upstream_request_attempt_count: r.attempts.unwrap_or(0),
        access_log_type: kind as i32,
        ..AccessLogCommon::default()
    }
}

fn tcp_entry(r: &Record<'_>) -> TcpAccessLogEntry {
    let mut common = common(r, AccessLogType::TcpConnectionEnd);
    // Envoy's TCP proxy counts its one connect attempt once a host was
    // picked, and gives each connection a fresh UUID as its stream id.
    if common.upstream_request_attempt_count == 0 && r.upstream_host.is_some() {
        common.upstream_request_attempt_count = 1;
    }
    common.stream_id = strait_codec::headers::request_id()
        .to_str()
        .unwrap_or_default()
        .to_owned();
    TcpAccessLogEntry {
        common_properties: Some(common),
        connection_properties: Some(ConnectionProperties {
            received_bytes: r.bytes_received,
            sent_bytes: r.bytes_sent,
        }),
    }
}

fn method(m: &Method) -> RequestMethod {
    match *m {
        Method::GET => RequestMethod::Get,
        Method::HEAD => RequestMethod::Head,
        Method::POST => RequestMethod::Post,
        Method::PUT => RequestMethod::Put,
        Method::DELETE => RequestMethod::Delete,
        Method::CONNECT => RequestMethod::Connect,
        Method::OPTIONS => RequestMethod::Options,
        Method::TRACE => RequestMethod::Trace,
        Method::PATCH => RequestMethod::Patch,
        _ => RequestMethod::MethodUnspecified,
    }
}

/// Envoy's header map byte size: every name and value, pseudo-headers
/// included.
fn header_bytes(h: &HeaderMap) -> u64 {
    h.iter()
        .map(|(k, v)| (k.as_str().len() + v.len()) as u64)
        .sum()
}

/// The request's `:scheme`: the URI's (HTTP/2), else what the connection
/// manager set in `x-forwarded-proto` (the downstream connection's), as
/// Envoy fills `:scheme` for HTTP/1.
fn scheme(req: &RequestHead) -> &str {
    req.uri
        .scheme_str()
        .or_else(|| req.header("x-forwarded-proto"))
        .unwrap_or("http")
}

/// Envoy's request header map size, pseudo-headers included, as the
/// connection manager passed the request on. (Envoy's map also holds
/// what its router added before forwarding, `x-envoy-expected-rq-timeout-
/// ms` first: not counted here, see decision 0016.)
fn request_header_bytes(req: &RequestHead) -> u64 {
    let pseudo = [":method", ":path", ":authority"]
        .iter()
        .filter_map(|p| req.header(p).map(|v| (p.len() + v.len()) as u64))
        .sum::<u64>()
        + (":scheme".len() + scheme(req).len()) as u64;
    // `host` is `:authority` in Envoy's map, counted once.
    let host = req
        .headers
        .get(http::header::HOST)
        .map_or(0, |v| (4 + v.len()) as u64);
    pseudo + header_bytes(&req.headers) - host
}

/// Envoy's response header map size: `:status`, and the `date` (always 29
/// characters) and a local reply's `content-length` that Envoy puts in
/// its map and Strait's HTTP codec adds only as it writes the head.
fn response_header_bytes(h: &HeaderMap, r: &Record<'_>) -> u64 {
    let mut n = header_bytes(h) + (":status".len() + 3) as u64;
    if !h.contains_key(http::header::DATE) {
        n += ("date".len() + 29) as u64;
    }
    let local = r.details != Some("via_upstream");
    if local
        && r.bytes_sent > 0
        && !h.contains_key(http::header::CONTENT_LENGTH)
        && !h.contains_key(http::header::TRANSFER_ENCODING)
    {
        n += ("content-length".len() + r.bytes_sent.to_string().len()) as u64;
    }
    n
}

/// The `names` of `h` that are present, as text.
fn picked(h: Option<&HeaderMap>, names: &[String]) -> std::collections::HashMap<String, String> {
    let Some(h) = h else {
        return std::collections::HashMap::new();
    };
    names
        .iter()
        .filter_map(|n| {
            let v = h.get(n.as_str())?.to_str().ok()?;
            Some((n.clone(), v.to_owned()))
        })
        .collect()
}

fn http_entry(log: &GrpcLog, r: &Record<'_>) -> HttpAccessLogEntry {
    let text = |name: &str| {
        r.request
            .and_then(|q| q.header(name))
            .unwrap_or_default()
            .to_owned()
    };
    let request = r.request.map(|q| HttpRequestProperties {
        request_method: method(&q.method) as i32,
        scheme: scheme(q).to_owned(),
        authority: text(":authority"),
        path: text(":path"),
        user_agent: text("user-agent"),
        referer: text("referer"),
        forwarded_for: text("x-forwarded-for"),
        request_id: text("x-request-id"),
        original_path: text("x-envoy-original-path"),
        request_headers_bytes: request_header_bytes(q),
        request_body_bytes: r.bytes_received,
        request_headers: picked(Some(&q.headers), &log.request_headers),
        ..HttpRequestProperties::default()
    });
    let response = HttpResponseProperties {
        response_code: (r.status != 0).then_some(UInt32Value {
            value: u32::from(r.status),
        }),
        response_headers_bytes: r
            .response_headers
            .map_or(0, |h| response_header_bytes(h, r)),
        response_body_bytes: r.bytes_sent,
        response_headers: picked(r.response_headers, &log.response_headers),
        response_trailers: picked(r.response_trailers, &log.response_trailers),
        response_code_details: r.details.unwrap_or_default().to_owned(),
        ..HttpResponseProperties::default()
    };
    let mut common = common(r, AccessLogType::DownstreamEnd);
    // The request id is the stream's id (Envoy's stream id provider).
    common.stream_id = text("x-request-id");
    common.time_to_last_downstream_tx_byte = r.duration.map(duration);
    HttpAccessLogEntry {
        common_properties: Some(common),
        protocol_version: match r.protocol {
            Some(Version::HTTP_10) => HttpVersion::Http10,
            Some(Version::HTTP_11) => HttpVersion::Http11,
            Some(Version::HTTP_2) => HttpVersion::Http2,
            Some(Version::HTTP_3) => HttpVersion::Http3,
            _ => HttpVersion::ProtocolUnspecified,
        } as i32,
        request,
        response: Some(response),
    }
}
