//! What goes to the authorization service and what comes back: the gRPC
//! `CheckRequest` (Envoy's `AttributeContext`) and the HTTP service's
//! request, and both kinds of answer read into one [`Verdict`].

use std::{collections::HashMap, time::SystemTime};

use bytes::{BufMut, Bytes, BytesMut};
use envoy_types::pb::{
    envoy::{
        config::core::v3::{
            Address, HeaderValueOption, Metadata, SocketAddress, address,
            socket_address::PortSpecifier,
        },
        service::auth::v3::{
            AttributeContext, CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse,
            attribute_context::{HttpRequest, Peer, Request as AttrRequest},
            check_response::HttpResponse,
        },
    },
    google::protobuf::Timestamp,
};
use http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode, request};
use prost::Message;
use strait_codec::Body;
use strait_envoy::pbjson;
use strait_model::{
    ext_authz::{BufferSettings, ExtAuthz, HttpService},
    policy::ValueMatcher,
};
use strait_tls::PeerIdentity;

/// The gRPC method every check calls.
pub(crate) const CHECK_PATH: &str = "/envoy.service.auth.v3.Authorization/Check";

/// Removed from the request when an HTTP service lists them here, on 200.
const HEADERS_TO_REMOVE: &str = "x-envoy-auth-headers-to-remove";

/// What the service decided.
#[derive(Debug)]
pub(crate) enum Verdict {
    Allow(Allow),
    Deny {
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
    },
    /// No usable answer (unreachable, timeout, 5xx, a gRPC error).
    Error,
}

/// An allowing answer's changes.
#[derive(Debug, Default)]
pub(crate) struct Allow {
    /// Replace (or add) on the request.
    pub(crate) set: Vec<(HeaderName, HeaderValue)>,
    /// Append to an existing request header (comma-joined).
    pub(crate) append: Vec<(HeaderName, HeaderValue)>,
    /// Whether an `append` header the request lacks is added: yes for an
    /// HTTP service's `allowed_upstream_headers_to_append`, no for a gRPC
    /// service's `append: true` headers (both as Envoy 1.40 does them).
    pub(crate) append_adds_missing: bool,
    pub(crate) remove: Vec<HeaderName>,
    /// Added to the response on its way back.
    pub(crate) response_add: Vec<(HeaderName, HeaderValue)>,
    pub(crate) query_set: Vec<(String, String)>,
    pub(crate) query_remove: Vec<String>,
    /// Published as the filter's dynamic metadata.
    pub(crate) metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

/// What the check is made of, besides the config.
pub(crate) struct Facts<'a> {
    pub(crate) head: &'a request::Parts,
    pub(crate) peer: std::net::SocketAddr,
    pub(crate) local: std::net::SocketAddr,
    pub(crate) tls: bool,
    /// The client's principal over mutual TLS (see [`principal`]).
    pub(crate) principal: String,
    pub(crate) body: Option<&'a Bytes>,
    pub(crate) buffer: Option<BufferSettings>,
    pub(crate) context_extensions: HashMap<String, String>,
    pub(crate) metadata_context: Option<Metadata>,
}

fn protocol(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

/// A peer's principal as Envoy's check names it: the certificate's first
/// URI SAN (a SPIFFE id in a mesh), else its subject; empty without one.
pub(crate) fn principal(cert: Option<&PeerIdentity>) -> String {
    cert.map(|c| {
        c.uri_sans
            .first()
            .map_or_else(|| c.subject.to_string(), |u| u.to_string())
    })
    .unwrap_or_default()
}

pub(crate) fn socket(a: std::net::SocketAddr) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: a.ip().to_string(),
            port_specifier: Some(PortSpecifier::PortValue(u32::from(a.port()))),
            ..Default::default()
        })),
    }
}

/// The request's `:authority`: the URI's, else `Host`.
pub(crate) fn authority(head: &request::Parts) -> String {
    head.uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            head.headers
                .get(http::header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_default()
}

/// Whether `name` goes to the service under the top-level `allowed_headers`
/// / `disallowed_headers`.
fn sent(config: &ExtAuthz, name: &str) -> bool {
    (config.allowed_headers.is_empty() || config.allowed_headers.iter().any(|m| m.matches(name)))
        && !config.disallowed_headers.iter().any(|m| m.matches(name))
}

/// The gRPC `CheckRequest`, framed for the wire.
pub(crate) fn grpc_request(config: &ExtAuthz, f: &Facts<'_>) -> Bytes {
    let head = f.head;
    let path = head.uri.path_and_query().map_or("/", |p| p.as_str());
    let host = authority(head);
    let mut headers: HashMap<String, String> = HashMap::new();
    let mut put = |k: &str, v: &str| {
        if sent(config, k) {
            headers
                .entry(k.to_owned())
                .and_modify(|e| {
                    e.push(',');
                    e.push_str(v);
                })
                .or_insert_with(|| v.to_owned());
        }
    };
    // Envoy's header map holds the pseudo-headers too.
    put(":authority", &host);
    put(":method", head.method.as_str());
    put(":path", path);
    put(":scheme", if f.tls { "https" } else { "http" });
    for (k, v) in &head.headers {
        if k != http::header::HOST
            && let Ok(v) = v.to_str()
        {
            put(k.as_str(), v);
        }
    }
    let size = head
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1);
    let (body, raw_body) = match (f.body, f.buffer) {
        (Some(b), Some(s)) if s.pack_as_bytes => (String::new(), b.to_vec()),
        (Some(b), Some(_)) => (String::from_utf8_lossy(b).into_owned(), Vec::new()),
        _ => (String::new(), Vec::new()),
    };
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let check = CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(Peer {
                address: Some(socket(f.peer)),
                principal: f.principal.clone(),
                ..Default::default()
            }),
            destination: Some(Peer {
                address: Some(socket(f.local)),
                ..Default::default()
            }),
            request: Some(AttrRequest {
                time: Some(Timestamp {
                    seconds: i64::try_from(now.as_secs()).unwrap_or(i64::MAX),
                    nanos: i32::try_from(now.subsec_nanos()).unwrap_or(0),
                }),
                http: Some(HttpRequest {
                    id: head
                        .headers
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned(),
                    method: head.method.as_str().to_owned(),
                    headers,
                    path: path.to_owned(),
                    host,
                    scheme: if f.tls { "https" } else { "http" }.to_owned(),
                    size,
                    protocol: protocol(head.version).to_owned(),
                    body,
                    raw_body,
                    ..Default::default()
                }),
            }),
            context_extensions: f.context_extensions.clone(),
            metadata_context: f.metadata_context.clone(),
            ..Default::default()
        }),
    };
    let msg = check.encode_to_vec();
    let mut out = BytesMut::with_capacity(msg.len() + 5);
    out.put_u8(0);
    out.put_u32(u32::try_from(msg.len()).unwrap_or(u32::MAX));
    out.extend_from_slice(&msg);
    out.freeze()
}

/// The HTTP service's request: the original method and path (after
/// `path_prefix`), the headers it may see, and the buffered body.
pub(crate) fn http_request(service: &HttpService, f: &Facts<'_>) -> Request<Body> {
    let head = f.head;
    let path = head.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut req = Request::new(match f.body {
        Some(b) => Body::full(b.clone()),
        None => Body::Empty,
    });
    *req.method_mut() = head.method.clone();
    *req.uri_mut() = format!("{}{path}", service.path_prefix)
        .parse()
        .unwrap_or_else(|_| http::Uri::from_static("/"));
    let always = |n: &str| n == "authorization";
    let h = req.headers_mut();
    for (k, v) in &head.headers {
        if *k == http::header::HOST || *k == http::header::CONTENT_LENGTH {
            continue;
        }
        if always(k.as_str())
            || service
                .allowed_request_headers
                .iter()
                .any(|m| m.matches(k.as_str()))
        {
            h.append(k.clone(), v.clone());
        }
    }
    for add in &service.request_headers_to_add {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(add.name.as_bytes()),
            HeaderValue::from_str(&add.value),
        ) {
            h.insert(n, v);
        }
    }
    h.insert(
        http::header::CONTENT_LENGTH,
        HeaderValue::from(f.body.map_or(0, Bytes::len)),
    );
    req
}

fn matches_any(list: &[ValueMatcher], name: &str) -> bool {
    list.iter().any(|m| m.matches(name))
}

/// An HTTP service's answer: 200 allows, 5xx is an error, anything else
/// denies with the answer itself.
pub(crate) fn http_verdict(
    service: &HttpService,
    status: StatusCode,
    headers: &HeaderMap,
    body: Bytes,
) -> Verdict {
    if status.is_server_error() {
        return Verdict::Error;
    }
    if status == StatusCode::OK {
        let mut allow = Allow::default();
        for v in headers.get_all(HEADERS_TO_REMOVE) {
            for name in v.to_str().unwrap_or_default().split(',') {
                if let Ok(n) = HeaderName::from_bytes(name.trim().as_bytes()) {
                    allow.remove.push(n);
                }
            }
        }
        let mut metadata = serde_json::Map::new();
        for (k, v) in headers {
            if *k == HEADERS_TO_REMOVE {
                continue;
            }
            let name = k.as_str();
            if matches_any(&service.allowed_upstream_headers, name) {
                allow.set.push((k.clone(), v.clone()));
            }
            if matches_any(&service.allowed_upstream_headers_to_append, name) {
                allow.append_adds_missing = true;
                allow.append.push((k.clone(), v.clone()));
            }
            if matches_any(&service.allowed_client_headers_on_success, name) {
                allow.response_add.push((k.clone(), v.clone()));
            }
            if matches_any(&service.dynamic_metadata_from_headers, name)
                && let Ok(s) = v.to_str()
            {
                metadata.insert(name.to_owned(), serde_json::Value::String(s.to_owned()));
            }
        }
        allow.metadata = (!metadata.is_empty()).then_some(metadata);
        return Verdict::Allow(allow);
    }
    // Denied: the answer's headers go to the client (all but `host` when
    // no list is configured; with one, those plus Envoy's fixed four).
    let mut out = HeaderMap::new();
    for (k, v) in headers {
        let name = k.as_str();
        let keep = if service.allowed_client_headers.is_empty() {
            name != "host"
        } else {
            matches_any(&service.allowed_client_headers, name)
                || matches!(name, "content-length" | "www-authenticate" | "location")
        };
        // Framing is the proxy's own.
        if keep && !matches!(name, "content-length" | "transfer-encoding" | "connection") {
            out.append(k.clone(), v.clone());
        }
    }
    Verdict::Deny {
        status,
        headers: out,
        body,
    }
}

/// A gRPC answer: the `CheckResponse` in `body` when `grpc-status` (in the
/// trailers, or the head of a trailers-only answer) is 0.
pub(crate) fn grpc_verdict(
    status: StatusCode,
    headers: &HeaderMap,
    trailers: Option<&HeaderMap>,
    body: &[u8],
) -> Verdict {
    let grpc_status = trailers
        .and_then(|t| t.get("grpc-status"))
        .or_else(|| headers.get("grpc-status"))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok());
    if status != StatusCode::OK || grpc_status != Some(0) || body.len() < 5 {
        return Verdict::Error;
    }
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    let Some(msg) = body.get(5..5 + len) else {
        return Verdict::Error;
    };
    let Ok(resp) = CheckResponse::decode(msg) else {
        return Verdict::Error;
    };
    let CheckResponse {
        status,
        dynamic_metadata,
        http_response,
    } = resp;
    let code = status.map_or(0, |s| s.code);
    if code == 0 {
        let mut allow = Allow {
            metadata: dynamic_metadata.as_ref().map(pbjson::struct_to_json),
            ..Allow::default()
        };
        if let Some(HttpResponse::OkResponse(ok)) = http_response {
            ok_response(ok, &mut allow);
        }
        return Verdict::Allow(allow);
    }
    let (mut status, mut headers, mut body) =
        (StatusCode::FORBIDDEN, HeaderMap::new(), Bytes::new());
    if let Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
        status: s,
        headers: h,
        body: b,
    })) = http_response
    {
        if let Some(s) = s
            .and_then(|s| u16::try_from(s.code).ok())
            .and_then(|c| StatusCode::from_u16(c).ok())
        {
            status = s;
        }
        for (n, v, append) in options(&h) {
            if !append {
                headers.remove(&n);
            }
            headers.append(n, v);
        }
        body = Bytes::from(b);
    }
    Verdict::Deny {
        status,
        headers,
        body,
    }
}

fn ok_response(ok: OkHttpResponse, allow: &mut Allow) {
    #[allow(deprecated)]
    let OkHttpResponse {
        headers,
        headers_to_remove,
        dynamic_metadata,
        response_headers_to_add,
        query_parameters_to_set,
        query_parameters_to_remove,
    } = ok;
    for (n, v, append) in options(&headers) {
        if append {
            allow.append.push((n, v));
        } else {
            allow.set.push((n, v));
        }
    }
    allow.remove = headers_to_remove
        .iter()
        .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
        .collect();
    allow.response_add = options(&response_headers_to_add)
        .map(|(n, v, _)| (n, v))
        .collect();
    allow.query_set = query_parameters_to_set
        .into_iter()
        .map(|q| (q.key, q.value))
        .collect();
    allow.query_remove = query_parameters_to_remove;
    if allow.metadata.is_none() {
        allow.metadata = dynamic_metadata.as_ref().map(pbjson::struct_to_json);
    }
}

/// `HeaderValueOption`s as (name, value, append); invalid ones skipped.
fn options(
    list: &[HeaderValueOption],
) -> impl Iterator<Item = (HeaderName, HeaderValue, bool)> + '_ {
    list.iter().filter_map(|o| {
        // Envoy's ext_authz reads the deprecated `append` (unset: replace).
        #[allow(deprecated)]
        let append = o.append.as_ref().is_some_and(|a| a.value);
        let h = o.header.as_ref()?;
        let value = if h.raw_value.is_empty() {
            HeaderValue::from_str(&h.value).ok()?
        } else {
            HeaderValue::from_bytes(&h.raw_value).ok()?
        };
        Some((
            HeaderName::from_bytes(h.key.as_bytes()).ok()?,
            value,
            append,
        ))
    })
}
