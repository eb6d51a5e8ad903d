//! Envoy's trace decision (`ConnectionManagerUtility::mutateTracingRequestHeader`
//! and the UUID request id extension), checked against Envoy 1.40: the
//! reason lives in the version nibble of `x-request-id` (the 15th hex
//! digit): `9` sampled, `a` forced by `x-envoy-force-trace`, `b` forced by
//! `x-client-trace-id`, `4` not traced. A request id that already carries a
//! reason keeps it (an earlier hop decided); otherwise client, forced and
//! random sampling are tried in that order, then overall sampling may veto.

use http::{HeaderMap, HeaderName, HeaderValue};
use strait_model::tracing::Tracing;

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_CLIENT_TRACE_ID: HeaderName = HeaderName::from_static("x-client-trace-id");
static X_ENVOY_FORCE_TRACE: HeaderName = HeaderName::from_static("x-envoy-force-trace");

/// Why a request is (not) traced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    NotTraceable,
    Sampled,
    /// `x-envoy-force-trace` from an internal client.
    ServiceForced,
    /// `x-client-trace-id` within `client_sampling`.
    ClientForced,
}

impl Reason {
    pub fn traced(self) -> bool {
        self != Reason::NotTraceable
    }

    fn nibble(self) -> u8 {
        match self {
            Reason::NotTraceable => b'4',
            Reason::Sampled => b'9',
            Reason::ServiceForced => b'a',
            Reason::ClientForced => b'b',
        }
    }
}

/// Index of the version nibble in a 36-character UUID.
const NIBBLE: usize = 14;

/// The reason recorded in a request id; `NotTraceable` for an id that is
/// not a UUID or carries another version.
fn recorded(id: &[u8]) -> Reason {
    if id.len() != 36 {
        return Reason::NotTraceable;
    }
    match id[NIBBLE] {
        b'9' => Reason::Sampled,
        b'a' => Reason::ServiceForced,
        b'b' => Reason::ClientForced,
        _ => Reason::NotTraceable,
    }
}

/// Envoy's `getInteger`: the id's first 8 hex digits, for sampling.
fn id_integer(id: &[u8]) -> Option<u64> {
    if id.len() != 36 {
        return None;
    }
    let s = std::str::from_utf8(&id[..8]).ok()?;
    u64::from_str_radix(s, 16).ok()
}

/// Makes the decision for a request whose headers the connection manager
/// has finished with (internal-only headers already stripped from
/// external requests, `x-request-id` set), and records it in
/// `x-request-id` when the settings say so. `random` is a fresh random
/// number (used where Envoy draws one). Allocation-free unless the id is
/// rewritten.
pub fn decide(h: &mut HeaderMap, t: &Tracing, random: u64) -> Reason {
    let Some(id) = h.get(&X_REQUEST_ID) else {
        return Reason::NotTraceable;
    };
    let bytes = id.as_bytes();
    let before = recorded(bytes);
    let sample_value = if t.request_id.use_request_id_for_trace_sampling {
        match id_integer(bytes) {
            Some(v) => v,
            // Envoy leaves a request whose id is no UUID alone.
            None => return before,
        }
    } else {
        random >> 16
    };
    let within = |per_10k: u32, v: u64| v % 10_000 < u64::from(per_10k);
    let mut reason = before;
    if reason == Reason::NotTraceable {
        if h.contains_key(&X_CLIENT_TRACE_ID) && within(t.client_sampling, random) {
            reason = Reason::ClientForced;
        } else if h.contains_key(&X_ENVOY_FORCE_TRACE) {
            reason = Reason::ServiceForced;
        } else if within(t.random_sampling, sample_value) {
            reason = Reason::Sampled;
        }
    }
    if reason.traced() && !within(t.overall_sampling, sample_value) {
        reason = Reason::NotTraceable;
    }
    if reason != before && t.request_id.pack_trace_reason && bytes.len() == 36 {
        let mut out = [0u8; 36];
        out.copy_from_slice(bytes);
        out[NIBBLE] = reason.nibble();
        if let Ok(v) = HeaderValue::from_bytes(&out) {
            h.insert(X_REQUEST_ID.clone(), v);
        }
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(id: &str, extra: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            "x-request-id",
            HeaderValue::from_str(id).expect("header value"),
        );
        for (k, v) in extra {
            h.insert(*k, HeaderValue::from_str(v).expect("header value"));
        }
        h
    }

    fn sampling(random: u32) -> Tracing {
        Tracing {
            random_sampling: random,
            ..Tracing::default()
        }
    }

    const ID: &str = "12345678-1234-4234-8234-123456789012";

    fn nibble(h: &HeaderMap) -> char {
        h["x-request-id"].as_bytes()[NIBBLE] as char
    }

    #[test]
    fn nibble_records_each_reason() {
        let mut h = headers(ID, &[]);
        assert_eq!(decide(&mut h, &sampling(10_000), 0), Reason::Sampled);
        assert_eq!(nibble(&h), '9');
        let mut h = headers(ID, &[]);
        assert_eq!(decide(&mut h, &sampling(0), 0), Reason::NotTraceable);
        assert_eq!(nibble(&h), '4');
        let mut h = headers(ID, &[("x-envoy-force-trace", "1")]);
        assert_eq!(decide(&mut h, &sampling(0), 0), Reason::ServiceForced);
        assert_eq!(nibble(&h), 'a');
        let mut h = headers(ID, &[("x-client-trace-id", "x")]);
        assert_eq!(decide(&mut h, &sampling(0), 0), Reason::ClientForced);
        assert_eq!(nibble(&h), 'b');
    }

    #[test]
    fn an_earlier_decision_stands_and_overall_sampling_vetoes() {
        let mut h = headers("12345678-1234-9234-8234-123456789012", &[]);
        assert_eq!(decide(&mut h, &sampling(0), 0), Reason::Sampled);
        let t = Tracing {
            overall_sampling: 0,
            ..Tracing::default()
        };
        let mut h = headers("12345678-1234-9234-8234-123456789012", &[]);
        assert_eq!(decide(&mut h, &t, 0), Reason::NotTraceable);
        assert_eq!(nibble(&h), '4');
    }

    #[test]
    fn random_sampling_reads_the_request_id() {
        // 0x00000063 = 99: within 1% (100 of 10000), 0x00000064 is not.
        let mut h = headers("00000063-1234-4234-8234-123456789012", &[]);
        assert_eq!(decide(&mut h, &sampling(100), 0), Reason::Sampled);
        let mut h = headers("00000064-1234-4234-8234-123456789012", &[]);
        assert_eq!(decide(&mut h, &sampling(100), 0), Reason::NotTraceable);
    }

    #[test]
    fn an_id_that_is_no_uuid_is_left_alone() {
        let mut h = headers("hello", &[]);
        assert_eq!(decide(&mut h, &sampling(10_000), 0), Reason::NotTraceable);
        assert_eq!(h["x-request-id"], "hello");
    }

    #[test]
    fn pack_trace_reason_false_leaves_the_id() {
        let mut t = sampling(10_000);
        t.request_id.pack_trace_reason = false;
        let mut h = headers(ID, &[]);
        assert_eq!(decide(&mut h, &t, 0), Reason::Sampled);
        assert_eq!(nibble(&h), '4');
    }
}
