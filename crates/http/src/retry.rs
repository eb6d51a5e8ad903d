//! Envoy's router retries: which policy applies to a request (route or
//! virtual host, and the `x-envoy-*` request headers of internal clients),
//! whether an attempt's outcome is worth another, and the back-off between
//! attempts.

use std::time::Duration;

use http::{HeaderMap, HeaderName, Response, StatusCode};
use strait_model::policy::{RetryOn, RetryPolicy};

static RETRY_ON: HeaderName = HeaderName::from_static("x-envoy-retry-on");
static RETRY_GRPC_ON: HeaderName = HeaderName::from_static("x-envoy-retry-grpc-on");
static MAX_RETRIES: HeaderName = HeaderName::from_static("x-envoy-max-retries");
static RQ_TIMEOUT: HeaderName = HeaderName::from_static("x-envoy-upstream-rq-timeout-ms");
static PER_TRY_TIMEOUT: HeaderName =
    HeaderName::from_static("x-envoy-upstream-rq-per-try-timeout-ms");
static OVERLOADED: HeaderName = HeaderName::from_static("x-envoy-overloaded");
static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
pub(crate) static ATTEMPT_COUNT: HeaderName = HeaderName::from_static("x-envoy-attempt-count");

/// The request headers the router consumes; never forwarded upstream.
const CONSUMED: [&HeaderName; 5] = [
    &RETRY_ON,
    &RETRY_GRPC_ON,
    &MAX_RETRIES,
    &RQ_TIMEOUT,
    &PER_TRY_TIMEOUT,
];

/// Envoy's defaults for a request that asks for retries by header only.
static HEADER_ONLY: RetryPolicy = RetryPolicy {
    retry_on: RetryOn::FIVE_XX,
    num_retries: 1,
    per_try_timeout: None,
    base_interval: Duration::from_millis(25),
    max_interval: Duration::from_millis(250),
    retriable_status_codes: Vec::new(),
    retriable_headers: Vec::new(),
    avoid_previous_hosts: false,
    host_selection_max_attempts: 1,
};

/// The retry and timeout plan of one request.
#[derive(Debug)]
pub(crate) struct Plan<'a> {
    /// Policy parameters (back-off, codes, headers, host predicate).
    pub(crate) policy: &'a RetryPolicy,
    pub(crate) retry_on: RetryOn,
    /// Retries allowed after the first attempt.
    pub(crate) max_retries: u32,
    pub(crate) per_try_timeout: Option<Duration>,
    /// The route timeout, possibly replaced by `x-envoy-upstream-rq-timeout-ms`.
    pub(crate) route_timeout: Option<Duration>,
}

impl<'a> Plan<'a> {
    /// Reads the plan and removes the headers it consumed. The `x-envoy-*`
    /// headers count only from internal clients (`internal`, as the
    /// connection manager decided it: `crate::edge::Origin`).
    /// Allocation-free.
    pub(crate) fn new(
        route_policy: Option<&'a RetryPolicy>,
        route_timeout: Option<Duration>,
        headers: &mut HeaderMap,
        internal: bool,
    ) -> Plan<'a> {
        let trusted = internal;
        let mut plan = Plan {
            policy: route_policy.unwrap_or(&HEADER_ONLY),
            retry_on: route_policy.map_or(RetryOn::default(), |p| p.retry_on),
            max_retries: route_policy.map_or(0, |p| p.num_retries),
            per_try_timeout: route_policy.and_then(|p| p.per_try_timeout),
            route_timeout,
        };
        if trusted {
            let text = |n: &HeaderName| headers.get(n).and_then(|v| v.to_str().ok());
            let asked = [&RETRY_ON, &RETRY_GRPC_ON]
                .into_iter()
                .filter_map(text)
                .map(RetryOn::parse_lenient)
                .fold(RetryOn::default(), RetryOn::union);
            if !asked.is_empty() {
                if route_policy.is_none() {
                    plan.max_retries = HEADER_ONLY.num_retries;
                }
                plan.retry_on = plan.retry_on.union(asked);
            }
            let number = |n: &HeaderName| text(n).and_then(|v| v.trim().parse::<u64>().ok());
            if let Some(n) = number(&MAX_RETRIES) {
                plan.max_retries = u32::try_from(n).unwrap_or(u32::MAX);
            }
            if let Some(ms) = number(&RQ_TIMEOUT) {
                plan.route_timeout = (ms > 0).then(|| Duration::from_millis(ms));
            }
            if let Some(ms) = number(&PER_TRY_TIMEOUT) {
                plan.per_try_timeout = (ms > 0).then(|| Duration::from_millis(ms));
            }
        }
        if plan.retry_on.is_empty() {
            plan.max_retries = 0;
        }
        // Envoy does not forward the router's control headers.
        for n in CONSUMED {
            headers.remove(n);
        }
        plan
    }

    /// Whether a response is worth retrying under this plan.
    pub(crate) fn retry_response<B>(&self, resp: &Response<B>) -> bool {
        let on = self.retry_on;
        let h = resp.headers();
        if h.contains_key(&OVERLOADED) {
            return false;
        }
        let s = resp.status();
        let code = s.as_u16();
        (on.contains(RetryOn::FIVE_XX) && s.is_server_error())
            || (on.contains(RetryOn::GATEWAY_ERROR) && (502..=504).contains(&code))
            || (on.contains(RetryOn::RETRIABLE_4XX) && s == StatusCode::CONFLICT)
            || (on.contains(RetryOn::RETRIABLE_STATUS_CODES)
                && self.policy.retriable_status_codes.contains(&code))
            || (on.contains(RetryOn::RETRIABLE_HEADERS)
                && self.policy.retriable_headers.iter().any(|m| m.matches(h)))
            || grpc_retriable(on, h)
    }

    /// Whether a failure without a response (connect failure, reset, per-try
    /// timeout) is worth retrying.
    pub(crate) fn retry_failure(&self, failure: Failure) -> bool {
        let on = self.retry_on;
        let any_reset = on.contains(RetryOn::RESET)
            || on.contains(RetryOn::FIVE_XX)
            || on.contains(RetryOn::GATEWAY_ERROR);
        let before_request = on.contains(RetryOn::RESET_BEFORE_REQUEST);
        match failure {
            Failure::Connect => {
                any_reset || before_request || on.contains(RetryOn::CONNECT_FAILURE)
            }
            Failure::ResetBeforeRequest => any_reset || before_request,
            Failure::Reset | Failure::PerTryTimeout => any_reset,
            Failure::RefusedStream => any_reset || on.contains(RetryOn::REFUSED_STREAM),
            Failure::Overflow => false,
        }
    }

    /// The wait before retry number `n` (1-based): Envoy's fully jittered
    /// exponential back-off, uniform in `[0, base × (2^n − 1))`, capped at
    /// `max_interval`.
    pub(crate) fn back_off(&self, n: u32, random: u64) -> Duration {
        let base = self.policy.base_interval.as_millis() as u64;
        let factor = (1u64 << n.min(32)).saturating_sub(1);
        let ceiling = base
            .saturating_mul(factor)
            .min(self.policy.max_interval.as_millis() as u64);
        if ceiling == 0 {
            return Duration::ZERO;
        }
        Duration::from_millis(random % ceiling)
    }
}

/// An attempt that produced no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    Connect,
    /// The connection closed before the request was written.
    ResetBeforeRequest,
    Reset,
    RefusedStream,
    PerTryTimeout,
    /// A circuit breaker refused the attempt: never retried.
    Overflow,
}

/// gRPC conditions look at `grpc-status` in the response headers (a
/// trailers-only response).
fn grpc_retriable(on: RetryOn, h: &HeaderMap) -> bool {
    let Some(code) = h
        .get(&GRPC_STATUS)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u32>().ok())
    else {
        return false;
    };
    match code {
        1 => on.contains(RetryOn::GRPC_CANCELLED),
        4 => on.contains(RetryOn::GRPC_DEADLINE_EXCEEDED),
        8 => on.contains(RetryOn::GRPC_RESOURCE_EXHAUSTED),
        13 => on.contains(RetryOn::GRPC_INTERNAL),
        14 => on.contains(RetryOn::GRPC_UNAVAILABLE),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn policy(on: &str) -> RetryPolicy {
        RetryPolicy {
            retry_on: RetryOn::parse_lenient(on),
            retriable_status_codes: vec![418],
            ..HEADER_ONLY.clone()
        }
    }

    fn resp(status: u16, header: Option<(&'static str, &'static str)>) -> Response<()> {
        let mut r = Response::new(());
        *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
        if let Some((k, v)) = header {
            r.headers_mut().insert(k, HeaderValue::from_static(v));
        }
        r
    }

    #[test]
    fn conditions() {
        // (retry_on, status, response header, retried?)
        type Case = (
            &'static str,
            u16,
            Option<(&'static str, &'static str)>,
            bool,
        );
        let table: &[Case] = &[
            ("5xx", 500, None, true),
            ("5xx", 404, None, false),
            ("gateway-error", 500, None, false),
            ("gateway-error", 503, None, true),
            ("retriable-4xx", 409, None, true),
            ("retriable-status-codes", 418, None, true),
            ("retriable-status-codes", 500, None, false),
            ("5xx", 503, Some(("x-envoy-overloaded", "true")), false),
            ("unavailable", 200, Some(("grpc-status", "14")), true),
            ("cancelled", 200, Some(("grpc-status", "14")), false),
        ];
        for (on, status, header, want) in table {
            let p = policy(on);
            let mut h = HeaderMap::new();
            let plan = Plan::new(Some(&p), None, &mut h, true);
            assert_eq!(
                plan.retry_response(&resp(*status, *header)),
                *want,
                "{on} {status} {header:?}"
            );
        }
        let p = policy("connect-failure");
        let plan = Plan::new(Some(&p), None, &mut HeaderMap::new(), true);
        assert!(plan.retry_failure(Failure::Connect));
        assert!(!plan.retry_failure(Failure::Reset));
        // Istio's default since 1.31: only what never reached the upstream.
        let p = policy("reset-before-request");
        let plan = Plan::new(Some(&p), None, &mut HeaderMap::new(), true);
        assert!(plan.retry_failure(Failure::ResetBeforeRequest));
        assert!(plan.retry_failure(Failure::Connect));
        assert!(!plan.retry_failure(Failure::Reset));
        assert!(!plan.retry_failure(Failure::PerTryTimeout));
        assert!(!plan.retry_failure(Failure::RefusedStream));
        // "reset" covers it too: a reset before the request is a reset.
        let p = policy("reset");
        let plan = Plan::new(Some(&p), None, &mut HeaderMap::new(), true);
        assert!(plan.retry_failure(Failure::ResetBeforeRequest));
    }

    #[test]
    fn headers_only_from_internal_clients() {
        let mut h = HeaderMap::new();
        h.insert(&RETRY_ON, HeaderValue::from_static("5xx"));
        h.insert(&MAX_RETRIES, HeaderValue::from_static("3"));
        let plan = Plan::new(None, None, &mut h.clone(), false);
        assert_eq!(plan.max_retries, 0);
        let mut inner = h.clone();
        let plan = Plan::new(None, None, &mut inner, true);
        assert_eq!(plan.max_retries, 3);
        assert!(inner.is_empty(), "consumed headers are removed");
    }

    #[test]
    fn back_off_is_bounded() {
        let p = policy("5xx");
        let plan = Plan::new(Some(&p), None, &mut HeaderMap::new(), true);
        for n in 1..10 {
            for r in [0, 7, u64::MAX] {
                assert!(plan.back_off(n, r) <= Duration::from_millis(250));
            }
        }
        assert!(plan.back_off(1, u64::MAX) < Duration::from_millis(25));
    }
}
