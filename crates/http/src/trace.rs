//! The connection manager's tracing (see `docs/decisions/0018-tracing.md`):
//! the trace decision, the B3 or W3C context handed upstream, and a sampled
//! request's span, finished and queued for export when its stream ends.
//!
//! A manager without `tracing` costs nothing here. A request that is not
//! sampled costs the decision and its context headers; only a sampled one
//! gathers tags and allocates its span.

use std::{
    sync::Arc,
    time::{Instant, SystemTime},
};

use http::{HeaderMap, HeaderName, Request, Version};
use strait_codec::{Progress, headers};
use strait_model::{
    TrafficDirection,
    tracing::{Provider, TagValue, Tracing},
};
use strait_trace::{
    Reason, Span, SpanSink, b3,
    span::Kind,
    w3c::{self, Extracted},
};

use strait_access_log::DynamicMetadata;

use crate::conn::ConnCtx;

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_CLIENT_TRACE_ID: HeaderName = HeaderName::from_static("x-client-trace-id");
static X_DOWNSTREAM_CLUSTER: HeaderName =
    HeaderName::from_static("x-envoy-downstream-service-cluster");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// A sampled request's span while its response is on its way: queued for
/// export when dropped (the end of the stream).
pub(crate) struct InFlight {
    span: Span,
    exporter: Arc<dyn SpanSink>,
    started: Instant,
    status: u16,
    flags: &'static str,
    pub(crate) cluster: Option<String>,
    pub(crate) request_body: Option<Arc<Progress>>,
    response_bytes: u64,
    /// The settings, kept when a custom tag reads dynamic metadata (known
    /// only once the filters ran).
    metadata_tags: Option<Arc<Tracing>>,
    /// The filters' dynamic metadata, for those tags.
    pub(crate) metadata: Option<DynamicMetadata>,
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlight").finish_non_exhaustive()
    }
}

/// Decides whether `req` is traced (recording the reason in its
/// `x-request-id`), writes the tracer's context for the upstream, and
/// starts the span when it is sampled. Returns the decision (for the
/// access log's `traceable_filter`) and the span.
pub(crate) fn start<B>(
    t: &Arc<Tracing>,
    req: &mut Request<B>,
    conn: &ConnCtx,
    direction: TrafficDirection,
    started: Instant,
) -> (Reason, Option<Box<InFlight>>) {
    let reason = strait_trace::decide(req.headers_mut(), t, headers::random_u64());
    let Some(provider) = &t.provider else {
        return (reason, None);
    };
    let kind = match direction {
        TrafficDirection::Outbound => Kind::Client,
        // Envoy's operation for an inbound or unspecified listener is
        // ingress.
        TrafficDirection::Inbound | TrafficDirection::Unspecified => Kind::Server,
    };
    let (mut span, exporter): (Span, Arc<dyn SpanSink>) = match provider {
        Provider::Zipkin(z) => {
            let incoming = b3::extract(req.headers());
            // The name is filled in only for a sampled span: an unsampled
            // one allocates nothing.
            let mut span = Span::start(
                z,
                kind,
                &incoming,
                reason.traced(),
                headers::random_u64,
                String::new(),
            );
            b3::inject(req.headers_mut(), &span.context, incoming.single);
            if !span.context.sampled {
                return (reason, None);
            }
            span.name = authority(req).to_owned();
            (span, conn.shared.tracers.get(z, &t.node.cluster))
        }
        Provider::OpenTelemetry(o) => {
            let parent = w3c::extract(req.headers());
            // An invalid `traceparent`: Envoy starts no span and writes no
            // context.
            let Some(mut span) = Span::otel(kind, parent, reason.traced(), headers::random_u64)
            else {
                return (reason, None);
            };
            // A root's `tracestate` is Envoy's empty one, whatever came.
            let state = match parent {
                Extracted::Parent { .. } => w3c::tracestate(req.headers()),
                _ => None,
            };
            if span.context.sampled
                && let Some(s) = &state
            {
                span.trace_state = String::from_utf8_lossy(s.as_bytes()).into_owned();
            }
            let c = &span.context;
            w3c::inject(req.headers_mut(), &c.trace, c.span, c.sampled, state);
            if !span.context.sampled {
                return (reason, None);
            }
            // Envoy's operation name: `egress <host>` outbound, `ingress`
            // inbound.
            span.name = match kind {
                Kind::Client => format!("egress {}", authority(req)),
                Kind::Server => "ingress".to_owned(),
            };
            let Some(exporter) = conn.shared.tracers.otel(o) else {
                return (reason, None);
            };
            (span, exporter)
        }
    };
    span.tags.reserve(24);
    span.start = SystemTime::now() - started.elapsed();
    request_tags(&mut span, t, req, conn);
    (
        reason,
        Some(Box::new(InFlight {
            span,
            exporter,
            started,
            status: 0,
            flags: "",
            cluster: None,
            request_body: None,
            response_bytes: 0,
            metadata_tags: t
                .custom_tags
                .iter()
                .any(|c| matches!(c.value, TagValue::Metadata { .. }))
                .then(|| Arc::clone(t)),
            metadata: None,
        })),
    )
}

/// The request's `:authority` (or `Host`).
fn authority<B>(req: &Request<B>) -> &str {
    req.uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| {
            req.headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
        })
        .unwrap_or_default()
}

fn header<'a>(h: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// The tags Envoy writes from the request (`HttpTracerUtility::finalizeDownstreamSpan`).
fn request_tags<B>(span: &mut Span, t: &Tracing, req: &Request<B>, conn: &ConnCtx) {
    let h = req.headers();
    span.tag("component", "proxy");
    span.tag("node_id", t.node.id.as_str());
    span.tag("zone", t.node.zone.as_str());
    if let Some(id) = header(h, &X_REQUEST_ID) {
        span.tag("guid:x-request-id", id);
    }
    if let Some(id) = header(h, &X_CLIENT_TRACE_ID) {
        span.tag("guid:x-client-trace-id", id);
    }
    let scheme = header(h, &X_FORWARDED_PROTO).unwrap_or("http");
    // `max_path_tag_length` cuts the path (with its query), not the URL.
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let path = path.get(..t.max_path_tag_length as usize).unwrap_or(path);
    span.tag("http.url", format!("{scheme}://{}{path}", authority(req)));
    span.tag("http.method", req.method().as_str());
    span.tag(
        "downstream_cluster",
        header(h, &X_DOWNSTREAM_CLUSTER).unwrap_or("-"),
    );
    span.tag(
        "user_agent",
        header(h, &http::header::USER_AGENT).unwrap_or("-"),
    );
    span.tag("http.protocol", protocol(req.version()));
    span.tag("peer.address", conn.peer.ip().to_canonical().to_string());
    for c in &t.custom_tags {
        let value = match &c.value {
            TagValue::Literal(v) => Some(v.as_str()),
            TagValue::RequestHeader { name, default } => h
                .get(name.as_str())
                .and_then(|v| v.to_str().ok())
                .or((!default.is_empty()).then_some(default.as_str())),
            // Read when the span ends, after the filters wrote it.
            TagValue::Metadata { .. } => None,
        };
        if let Some(v) = value {
            span.tag(c.tag.as_str(), v);
        }
    }
}

fn protocol(v: Version) -> &'static str {
    match v {
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

impl InFlight {
    /// Whether a custom tag reads the filters' dynamic metadata.
    pub(crate) fn wants_metadata(&self) -> bool {
        self.metadata_tags.is_some()
    }

    /// The response head as it leaves the connection manager.
    pub(crate) fn response(&mut self, status: u16, flags: &'static str) {
        self.status = status;
        self.flags = flags;
    }

    /// A response body frame went down.
    pub(crate) fn frame(&mut self, frame: &http_body::Frame<bytes::Bytes>) {
        if let Some(d) = frame.data_ref() {
            self.response_bytes += d.len() as u64;
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let s = &mut self.span;
        s.duration_us = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let request_size = self.request_body.as_deref().map_or(0, Progress::bytes);
        s.tag("request_size", request_size.to_string());
        s.tag("response_size", self.response_bytes.to_string());
        if let Some(c) = &self.cluster {
            s.tag("upstream_cluster", c.as_str());
            s.tag("upstream_cluster.name", c.as_str());
        }
        s.tag("http.status_code", self.status.to_string());
        s.tag(
            "response_flags",
            if self.flags.is_empty() {
                "-"
            } else {
                self.flags
            },
        );
        if self.status == 0 || self.status >= 500 {
            s.tag("error", "true");
        }
        if let Some(t) = &self.metadata_tags {
            for c in &t.custom_tags {
                if let TagValue::Metadata {
                    filter,
                    path,
                    default,
                } = &c.value
                {
                    let keys: Vec<&str> = path.iter().map(String::as_str).collect();
                    let found = self.metadata.as_ref().and_then(|m| m.get(filter, &keys));
                    match found {
                        Some(serde_json::Value::String(v)) => s.tag(c.tag.as_str(), v.as_str()),
                        Some(v) => s.tag(c.tag.as_str(), v.to_string()),
                        None if !default.is_empty() => s.tag(c.tag.as_str(), default.as_str()),
                        None => {}
                    }
                }
            }
        }
        let span = std::mem::replace(
            s,
            Span {
                context: s.context,
                kind: s.kind,
                name: String::new(),
                shared: false,
                start: s.start,
                duration_us: 0,
                tags: Vec::new(),
                remote_parent: false,
                trace_state: String::new(),
            },
        );
        self.exporter.send(span);
    }
}
