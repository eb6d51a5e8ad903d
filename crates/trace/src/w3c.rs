//! The OpenTelemetry tracer's W3C trace context (Envoy's
//! `SpanContextExtractor` and `Span::injectContext`, checked against Envoy
//! 1.40): `traceparent` is `version-traceid-parentid-flags` in hex, 55
//! characters. Envoy accepts any hex version and either case, refuses
//! all-zero ids, and reads the sampled bit of the flags. A request with an
//! invalid `traceparent` gets no span at all: its headers go upstream
//! untouched. `tracestate` is carried through (several headers joined with
//! `,`), and written back even when empty.

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::b3::TraceId;

static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// What a request's `traceparent` said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extracted {
    /// No `traceparent`: the span is a root.
    Absent,
    /// A `traceparent` Envoy refuses: no span, no context written.
    Invalid,
    /// The caller's trace, span and sampled flag.
    Parent {
        trace: TraceId,
        span: u64,
        sampled: bool,
    },
}

fn hex(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 16 || !s.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(s).ok()?, 16).ok()
}

/// Reads `traceparent`. Allocation-free.
pub fn extract(h: &HeaderMap) -> Extracted {
    let Some(v) = h.get(&TRACEPARENT) else {
        return Extracted::Absent;
    };
    parse(v.as_bytes()).unwrap_or(Extracted::Invalid)
}

fn parse(v: &[u8]) -> Option<Extracted> {
    if v.len() != 55 {
        return None;
    }
    let mut parts = v.split(|b| *b == b'-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some()
        || version.len() != 2
        || trace.len() != 32
        || parent.len() != 16
        || flags.len() != 2
    {
        return None;
    }
    hex(version)?;
    let trace = TraceId {
        high: hex(&trace[..16])?,
        low: hex(&trace[16..])?,
        wide: true,
    };
    let span = hex(parent)?;
    let flags = hex(flags)?;
    if (trace.high == 0 && trace.low == 0) || span == 0 {
        return None;
    }
    Some(Extracted::Parent {
        trace,
        span,
        sampled: flags & 1 == 1,
    })
}

/// The request's `tracestate`: its one header as is, several joined with
/// `,` (RFC 7230's field order), `None` when absent.
pub fn tracestate(h: &HeaderMap) -> Option<HeaderValue> {
    let mut all = h.get_all(&TRACESTATE).iter();
    let first = all.next()?;
    let Some(second) = all.next() else {
        return Some(first.clone());
    };
    let mut joined = first.as_bytes().to_vec();
    for v in std::iter::once(second).chain(all) {
        joined.push(b',');
        joined.extend_from_slice(v.as_bytes());
    }
    HeaderValue::from_bytes(&joined).ok()
}

/// Writes `traceparent` (version `00`) and `tracestate` for the upstream;
/// `state` `None` writes an empty `tracestate`, as Envoy does.
pub fn inject(
    h: &mut HeaderMap,
    trace: &TraceId,
    span: u64,
    sampled: bool,
    state: Option<HeaderValue>,
) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 55];
    buf[..3].copy_from_slice(b"00-");
    for (i, v) in [trace.high, trace.low, span].into_iter().enumerate() {
        let at = 3 + i * 16 + usize::from(i == 2);
        for d in 0..16 {
            buf[at + d] = DIGITS[((v >> ((15 - d) * 4)) & 0xf) as usize];
        }
    }
    buf[35] = b'-';
    buf[52..].copy_from_slice(if sampled { b"-01" } else { b"-00" });
    if let Ok(v) = HeaderValue::from_bytes(&buf) {
        h.insert(TRACEPARENT.clone(), v);
    }
    h.insert(
        TRACESTATE.clone(),
        state.unwrap_or_else(|| HeaderValue::from_static("")),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).expect("header value"));
        }
        h
    }

    const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn parses_and_writes_back() {
        let Extracted::Parent {
            trace,
            span,
            sampled,
        } = extract(&with(&[("traceparent", TP)]))
        else {
            panic!("a parent");
        };
        assert_eq!(trace.hex(), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!((span, sampled), (0xb7ad6b7169203331, true));
        let mut out = HeaderMap::new();
        inject(&mut out, &trace, span, true, None);
        assert_eq!(out["traceparent"], TP);
        assert_eq!(out["tracestate"], "");
        inject(
            &mut out,
            &trace,
            1,
            false,
            Some(HeaderValue::from_static("a=b")),
        );
        assert_eq!(
            out["traceparent"],
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000001-00"
        );
        assert_eq!(out["tracestate"], "a=b");
    }

    #[test]
    fn envoy_accepts_other_versions_flags_and_upper_case() {
        for v in [
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-03",
        ] {
            assert!(
                matches!(
                    extract(&with(&[("traceparent", v)])),
                    Extracted::Parent { sampled: true, .. }
                ),
                "{v}"
            );
        }
        let h = with(&[(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-02",
        )]);
        assert!(matches!(
            extract(&h),
            Extracted::Parent { sampled: false, .. }
        ));
    }

    #[test]
    fn refuses_what_envoy_refuses() {
        for v in [
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-zz-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-",
            "000-af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333g-01",
        ] {
            assert_eq!(
                extract(&with(&[("traceparent", v)])),
                Extracted::Invalid,
                "{v}"
            );
        }
        assert_eq!(extract(&HeaderMap::new()), Extracted::Absent);
    }

    #[test]
    fn several_tracestates_are_joined() {
        let h = with(&[("tracestate", "a=1"), ("tracestate", "b=2")]);
        assert_eq!(tracestate(&h).expect("state"), "a=1,b=2");
        assert_eq!(
            tracestate(&with(&[("tracestate", "a=1")])).expect("state"),
            "a=1"
        );
        assert!(tracestate(&HeaderMap::new()).is_none());
    }
}
