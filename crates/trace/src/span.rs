//! One request's span as Envoy's Zipkin tracer builds it (checked against
//! Envoy 1.40): its ids from the incoming B3 context, its kind from the
//! listener's direction (`SERVER` inbound, `CLIENT` outbound), Envoy's
//! tags, and its Zipkin v2 JSON.

use std::{net::Ipv4Addr, time::SystemTime};

use serde_json::{Map, Value, json};
use strait_model::tracing::Zipkin;

use crate::{
    b3::{Incoming, Outgoing, TraceId},
    w3c::Extracted,
};

/// `SERVER` (ingress: the listener is inbound) or `CLIENT` (egress).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Server,
    Client,
}

/// A span: ids, name, timing and tags.
#[derive(Debug, Clone)]
pub struct Span {
    pub context: Outgoing,
    pub kind: Kind,
    /// Envoy names the span after the request's `:authority`.
    pub name: String,
    /// A server span that reuses its caller's span id
    /// (`shared_span_context`).
    pub shared: bool,
    pub start: SystemTime,
    pub duration_us: u64,
    pub tags: Vec<(String, String)>,
    /// The OpenTelemetry span's parent came in the request's
    /// `traceparent` (OTLP's `SPAN_FLAGS_CONTEXT_IS_REMOTE`).
    pub remote_parent: bool,
    /// The OpenTelemetry span's `tracestate` (carried from the request).
    pub trace_state: String,
}

impl Span {
    /// Starts a span for a request that carried `incoming`; `traced` is the
    /// connection manager's decision (an incoming sampling flag wins, as in
    /// Envoy), `random` supplies the new ids.
    pub fn start(
        z: &Zipkin,
        kind: Kind,
        incoming: &Incoming,
        traced: bool,
        mut random: impl FnMut() -> u64,
        name: String,
    ) -> Span {
        let sampled = incoming.sampled.unwrap_or(traced);
        let shared_server = kind == Kind::Server && z.shared_span_context;
        let context = match incoming.ids {
            Some((trace, span, parent)) if shared_server => Outgoing {
                trace,
                span,
                parent,
                sampled,
            },
            Some((trace, span, _)) => Outgoing {
                trace,
                span: random(),
                parent: Some(span),
                sampled,
            },
            None => {
                // A root: the span id is the trace id's low half.
                let span = random();
                let high = if z.trace_id_128bit { random() } else { 0 };
                Outgoing {
                    trace: TraceId {
                        high,
                        low: span,
                        wide: z.trace_id_128bit,
                    },
                    span,
                    parent: None,
                    sampled,
                }
            }
        };
        Span {
            context,
            kind,
            name,
            shared: shared_server,
            start: SystemTime::now(),
            duration_us: 0,
            tags: Vec::new(),
            remote_parent: false,
            trace_state: String::new(),
        }
    }

    /// Starts an OpenTelemetry span (Envoy's OpenTelemetry tracer): a
    /// child of the request's `traceparent` when it had a valid one, else
    /// a root with a random 128-bit trace id. Sampled only when the
    /// connection manager traces the request and, with a parent, the
    /// parent is sampled too (Envoy 1.40 honours neither alone). `None`
    /// for an invalid `traceparent`, which Envoy answers with no span.
    pub fn otel(
        kind: Kind,
        parent: Extracted,
        traced: bool,
        mut random: impl FnMut() -> u64,
    ) -> Option<Span> {
        let (trace, parent, sampled) = match parent {
            Extracted::Invalid => return None,
            Extracted::Absent => (
                TraceId {
                    high: random(),
                    low: random(),
                    wide: true,
                },
                None,
                traced,
            ),
            Extracted::Parent {
                trace,
                span,
                sampled,
            } => (trace, Some(span), traced && sampled),
        };
        Some(Span {
            context: Outgoing {
                trace,
                span: random(),
                parent,
                sampled,
            },
            kind,
            name: String::new(),
            shared: false,
            start: SystemTime::now(),
            duration_us: 0,
            tags: Vec::new(),
            remote_parent: parent.is_some(),
            trace_state: String::new(),
        })
    }

    /// Whether Envoy's `error` tag is set (an OTLP status of `ERROR`).
    pub fn is_error(&self) -> bool {
        self.tags.iter().any(|(k, v)| k == "error" && v == "true")
    }

    pub fn tag(&mut self, k: impl Into<String>, v: impl Into<String>) {
        self.tags.push((k.into(), v.into()));
    }

    /// The span as Zipkin v2 JSON (`serviceName` is the node's cluster,
    /// `ipv4` the proxy's own address, as Envoy's local endpoint).
    pub fn to_json(&self, service: &str, ipv4: Ipv4Addr) -> Value {
        let ts = self
            .start
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        let mut tags = Map::new();
        for (k, v) in &self.tags {
            tags.insert(k.clone(), Value::String(v.clone()));
        }
        let (kind, annotation) = match self.kind {
            Kind::Server => ("SERVER", "ss"),
            Kind::Client => ("CLIENT", "cr"),
        };
        let mut span = json!({
            "traceId": self.context.trace.hex(),
            "id": format!("{:016x}", self.context.span),
            "name": self.name,
            "kind": kind,
            "timestamp": ts,
            "duration": self.duration_us,
            "localEndpoint": {"serviceName": service, "ipv4": ipv4.to_string(), "port": 0},
            "annotations": [{"timestamp": ts + self.duration_us, "value": annotation}],
            "tags": tags,
        });
        if let Some(p) = self.context.parent {
            span["parentId"] = Value::String(format!("{p:016x}"));
        }
        if self.shared {
            span["shared"] = Value::Bool(true);
        }
        span
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zipkin(wide: bool, shared: bool) -> Zipkin {
        Zipkin {
            cluster: "z".into(),
            endpoint: "/api/v2/spans".into(),
            hostname: "z".into(),
            trace_id_128bit: wide,
            shared_span_context: shared,
        }
    }

    fn counter() -> impl FnMut() -> u64 {
        let mut n = 0x10;
        move || {
            n += 1;
            n
        }
    }

    #[test]
    fn a_root_span_id_is_the_trace_ids_low_half() {
        let s = Span::start(
            &zipkin(true, true),
            Kind::Client,
            &Incoming::default(),
            true,
            counter(),
            "h".into(),
        );
        assert_eq!(s.context.span, s.context.trace.low);
        assert_eq!(s.context.trace.hex(), "00000000000000120000000000000011");
        assert!(s.context.sampled && !s.shared);
    }

    #[test]
    fn server_shares_the_callers_span_and_client_makes_a_child() {
        let incoming = Incoming {
            ids: Some((
                TraceId {
                    high: 0,
                    low: 1,
                    wide: false,
                },
                2,
                Some(9),
            )),
            sampled: Some(true),
            single: false,
        };
        let s = Span::start(
            &zipkin(false, true),
            Kind::Server,
            &incoming,
            false,
            counter(),
            "h".into(),
        );
        assert_eq!(
            (
                s.context.span,
                s.context.parent,
                s.context.sampled,
                s.shared
            ),
            (2, Some(9), true, true)
        );
        let s = Span::start(
            &zipkin(false, false),
            Kind::Server,
            &incoming,
            false,
            counter(),
            "h".into(),
        );
        assert_eq!(
            (s.context.span, s.context.parent, s.shared),
            (0x11, Some(2), false)
        );
        let s = Span::start(
            &zipkin(false, true),
            Kind::Client,
            &incoming,
            false,
            counter(),
            "h".into(),
        );
        assert_eq!((s.context.span, s.context.parent), (0x11, Some(2)));
        let j = s.to_json("svc", Ipv4Addr::LOCALHOST);
        assert_eq!(j["parentId"], "0000000000000002");
        assert_eq!(j["kind"], "CLIENT");
        assert_eq!(j["annotations"][0]["value"], "cr");
    }
}
