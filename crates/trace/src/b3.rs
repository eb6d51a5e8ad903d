//! The Zipkin tracer's B3 context (Envoy's `SpanContextExtractor` and
//! `injectContext`, checked against Envoy 1.40): read from `b3` (single
//! header) or `x-b3-traceid`/`x-b3-spanid`/`x-b3-parentspanid`/
//! `x-b3-sampled`, written back in the form the request came with (a
//! request with a single `b3` is answered with `b3`, all others with the
//! `x-b3-*` headers). A malformed context is ignored: the span starts a
//! new trace, as in Envoy.

use http::{HeaderMap, HeaderName, HeaderValue};

static B3: HeaderName = HeaderName::from_static("b3");
static TRACE_ID: HeaderName = HeaderName::from_static("x-b3-traceid");
static SPAN_ID: HeaderName = HeaderName::from_static("x-b3-spanid");
static PARENT_ID: HeaderName = HeaderName::from_static("x-b3-parentspanid");
static SAMPLED: HeaderName = HeaderName::from_static("x-b3-sampled");

/// A trace id: `high` is 0 for a 64-bit id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceId {
    pub high: u64,
    pub low: u64,
    /// Written as 32 hex digits.
    pub wide: bool,
}

impl TraceId {
    pub fn hex(&self) -> String {
        let mut out = String::with_capacity(32);
        self.push_hex(&mut out);
        out
    }

    fn push_hex(&self, out: &mut String) {
        if self.wide {
            push_hex64(out, self.high);
        }
        push_hex64(out, self.low);
    }
}

/// `v` as 16 lower-case hex digits. Every request of a traced connection
/// manager carries its ids, sampled or not: `format!` cost more here than
/// the trace decision itself (`cargo xtask bench --telemetry --callgrind`).
fn push_hex64(out: &mut String, v: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..16).rev() {
        out.push(char::from(DIGITS[((v >> (shift * 4)) & 0xf) as usize]));
    }
}

/// A header value from ASCII text built here; never fails for hex digits.
fn value(v: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(v).ok()
}

/// What a request carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Incoming {
    /// Trace, span and parent ids, when the request had a whole context.
    pub ids: Option<(TraceId, u64, Option<u64>)>,
    /// The sampling flag, when given (alone or with ids).
    pub sampled: Option<bool>,
    /// The context came in a single `b3` header.
    pub single: bool,
}

fn hex64(s: &[u8]) -> Option<u64> {
    if s.len() != 16 {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(s).ok()?, 16).ok()
}

fn trace_id(s: &[u8]) -> Option<TraceId> {
    match s.len() {
        16 => Some(TraceId {
            high: 0,
            low: hex64(s)?,
            wide: false,
        }),
        32 => Some(TraceId {
            high: hex64(&s[..16])?,
            low: hex64(&s[16..])?,
            wide: true,
        }),
        _ => None,
    }
}

fn sampled_flag(s: &[u8]) -> Option<bool> {
    match s {
        b"1" | b"d" | b"true" => Some(true),
        b"0" | b"false" => Some(false),
        _ => None,
    }
}

/// Reads the request's B3 context. Allocation-free.
pub fn extract(h: &HeaderMap) -> Incoming {
    if let Some(v) = h.get(&B3) {
        let mut parts = v.as_bytes().split(|b| *b == b'-');
        let first = parts.next().unwrap_or_default();
        let Some(second) = parts.next() else {
            // Only a sampling state.
            return Incoming {
                ids: None,
                sampled: sampled_flag(first),
                single: true,
            };
        };
        let sampled = parts.next().and_then(sampled_flag);
        let parent = parts.next().and_then(hex64);
        let ids = trace_id(first)
            .zip(hex64(second))
            .map(|(t, s)| (t, s, parent));
        return Incoming {
            ids,
            sampled: if ids.is_some() { sampled } else { None },
            single: true,
        };
    }
    let sampled = h.get(&SAMPLED).and_then(|v| sampled_flag(v.as_bytes()));
    let ids = match (h.get(&TRACE_ID), h.get(&SPAN_ID)) {
        (Some(t), Some(s)) => trace_id(t.as_bytes())
            .zip(hex64(s.as_bytes()))
            .map(|(t, s)| (t, s, h.get(&PARENT_ID).and_then(|p| hex64(p.as_bytes())))),
        _ => None,
    };
    Incoming {
        ids,
        sampled,
        single: false,
    }
}

/// The context a span hands on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outgoing {
    pub trace: TraceId,
    pub span: u64,
    pub parent: Option<u64>,
    pub sampled: bool,
}

/// Writes `out` into the request for the upstream, in the form the
/// request came with.
pub fn inject(h: &mut HeaderMap, out: &Outgoing, single: bool) {
    let sampled = if out.sampled { "1" } else { "0" };
    let mut buf = String::with_capacity(72);
    if single {
        out.trace.push_hex(&mut buf);
        buf.push('-');
        push_hex64(&mut buf, out.span);
        buf.push('-');
        buf.push_str(sampled);
        if let Some(p) = out.parent {
            buf.push('-');
            push_hex64(&mut buf, p);
        }
        if let Some(v) = value(&buf) {
            h.insert(B3.clone(), v);
        }
        return;
    }
    let mut set = |h: &mut HeaderMap, name: &HeaderName, write: &dyn Fn(&mut String)| {
        buf.clear();
        write(&mut buf);
        if let Some(v) = value(&buf) {
            h.insert(name.clone(), v);
        }
    };
    set(h, &TRACE_ID, &|b| out.trace.push_hex(b));
    set(h, &SPAN_ID, &|b| push_hex64(b, out.span));
    match out.parent {
        Some(p) => set(h, &PARENT_ID, &|b| push_hex64(b, p)),
        None => {
            h.remove(&PARENT_ID);
        }
    }
    h.insert(SAMPLED.clone(), HeaderValue::from_static(sampled));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).expect("header value"));
        }
        h
    }

    #[test]
    fn multi_headers_round_trip() {
        let h = map(&[
            ("x-b3-traceid", "0000000000000001"),
            ("x-b3-spanid", "0000000000000002"),
            ("x-b3-sampled", "1"),
        ]);
        let i = extract(&h);
        let (t, s, p) = i.ids.expect("a whole context");
        assert_eq!(
            (t.low, t.wide, s, p, i.sampled, i.single),
            (1, false, 2, None, Some(true), false)
        );
        let mut out = HeaderMap::new();
        inject(
            &mut out,
            &Outgoing {
                trace: t,
                span: 3,
                parent: Some(2),
                sampled: true,
            },
            false,
        );
        assert_eq!(out["x-b3-traceid"], "0000000000000001");
        assert_eq!(out["x-b3-spanid"], "0000000000000003");
        assert_eq!(out["x-b3-parentspanid"], "0000000000000002");
        assert_eq!(out["x-b3-sampled"], "1");
    }

    #[test]
    fn single_header_is_answered_with_single() {
        let h = map(&[(
            "b3",
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-0000000000000009",
        )]);
        let i = extract(&h);
        let (t, s, p) = i.ids.expect("a whole context");
        assert!(i.single && t.wide);
        assert_eq!((s, p), (0xe457b5a2e4d86bd1, Some(9)));
        let mut out = HeaderMap::new();
        inject(
            &mut out,
            &Outgoing {
                trace: t,
                span: s,
                parent: p,
                sampled: true,
            },
            true,
        );
        assert_eq!(
            out["b3"],
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-0000000000000009"
        );
        assert!(out.get("x-b3-traceid").is_none());
    }

    #[test]
    fn sampling_only_and_malformed() {
        let i = extract(&map(&[("b3", "0")]));
        assert_eq!((i.ids, i.sampled, i.single), (None, Some(false), true));
        let i = extract(&map(&[("x-b3-sampled", "1")]));
        assert_eq!((i.ids, i.sampled), (None, Some(true)));
        let i = extract(&map(&[
            ("x-b3-traceid", "xyz"),
            ("x-b3-spanid", "0000000000000002"),
        ]));
        assert_eq!(i.ids, None);
    }
}
