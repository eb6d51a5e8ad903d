//! Envoy's `AccessLogFilter` over a [`Record`]: which entries are written
//! (and which local replies a mapper rewrites). Pure, no allocation.

use strait_model::access_log::{LogFilter, RuntimeSample};

use crate::record::Record;

/// Whether `f` accepts `r`.
pub fn matches(f: &LogFilter, r: &Record<'_>) -> bool {
    match f {
        LogFilter::Status(c) => c.holds(u64::from(r.status)),
        LogFilter::Duration(c) => c.holds(
            r.duration
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        ),
        LogFilter::NotHealthCheck => true,
        LogFilter::NeverTraceable => false,
        LogFilter::Traceable => r.trace_forced,
        LogFilter::Header(h) => r.request.is_some_and(|req| h.matches(&req.headers)),
        LogFilter::ResponseFlags(flags) if flags.is_empty() => !r.flags.is_empty(),
        LogFilter::ResponseFlags(flags) => r.flags.split(',').any(|f| flags.iter().any(|w| w == f)),
        LogFilter::Runtime(sample) => sampled(sample, r),
        LogFilter::And(v) => v.iter().all(|f| matches(f, r)),
        LogFilter::Or(v) => v.iter().any(|f| matches(f, r)),
    }
}

/// `runtime_filter` with its default `percent_sampled`: Envoy draws from
/// the request id (its UUID's first 8 hex digits, so one request is
/// sampled alike everywhere) unless `use_independent_randomness`, or when
/// there is no usable request id.
fn sampled(s: &RuntimeSample, r: &Record<'_>) -> bool {
    if s.numerator == 0 {
        return false;
    }
    let from_id = (!s.independent_randomness)
        .then(|| r.request_id())
        .flatten()
        .and_then(|id| u64::from_str_radix(id.get(..8)?, 16).ok());
    let draw = from_id.unwrap_or_else(random);
    draw % u64::from(s.denominator.max(1)) < u64::from(s.numerator)
}

/// A cheap per-thread pseudo-random number (xorshift), seeded from the
/// clock: sampling needs no cryptographic quality.
fn random() -> u64 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0x9e37_79b9, |d| d.as_nanos() as u64)
                | 1,
        );
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        x
    })
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use strait_model::access_log::{CompareOp, Comparison};

    use super::*;
    use crate::record::RequestHead;

    #[test]
    fn filters_as_envoy() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "x-request-id",
            http::HeaderValue::from_static("00000005-0000-4000-8000-000000000000"),
        );
        let head = RequestHead {
            method: http::Method::GET,
            uri: "/".parse().expect("uri"),
            headers,
        };
        let addr = "127.0.0.1:1".parse().expect("addr");
        let mut r = Record::new(SystemTime::now(), addr, addr);
        r.request = Some(&head);
        r.status = 503;
        r.flags = "UF,URX";
        let ge500 = LogFilter::Status(Comparison {
            op: CompareOp::Ge,
            value: 500,
        });
        assert!(matches(&ge500, &r));
        assert!(matches(&LogFilter::ResponseFlags(vec!["URX".into()]), &r));
        assert!(!matches(&LogFilter::ResponseFlags(vec!["NR".into()]), &r));
        assert!(matches(&LogFilter::ResponseFlags(vec![]), &r));
        let rt = |n| {
            LogFilter::Runtime(RuntimeSample {
                numerator: n,
                denominator: 100,
                independent_randomness: false,
            })
        };
        // The id draws 5: sampled at 6 %, not at 5 %.
        assert!(matches(&rt(6), &r));
        assert!(!matches(&rt(5), &r));
        assert!(!matches(&rt(0), &r));
        assert!(!matches(
            &LogFilter::And(vec![ge500.clone(), LogFilter::NeverTraceable]),
            &r
        ));
        assert!(matches(
            &LogFilter::Or(vec![LogFilter::NeverTraceable, ge500]),
            &r
        ));
        r.flags = "";
        assert!(!matches(&LogFilter::ResponseFlags(vec![]), &r));
    }
}
