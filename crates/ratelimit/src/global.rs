//! `envoy.filters.http.ratelimit`: asks a rate-limit service about the
//! request's descriptors before it goes on.
//!
//! As Envoy 1.40: only requests of the configured `request_type` that
//! were routed to a cluster and produce descriptors (the route's policies
//! of the filter's `stage`, then the virtual host's unless the route has
//! its own, or all of them with `include_vh_rate_limits`) are asked about;
//! the request pauses (the worker does not) for the call. Over the limit:
//! counted, and answered with `rate_limited_status` and the service's body
//! and response headers (and `x-envoy-ratelimited: true`), flag `RL`. OK:
//! counted; the service's request headers are added to the request, its
//! response headers (and `x-ratelimit-*`) to the response. A failed call:
//! counted as an error; answered `status_on_error` with flag `RLSE` under
//! `failure_mode_deny`, else let through (`failure_mode_allowed`). The
//! counters are the routed cluster's, as Envoy charges them.

use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use strait_http::{Decision, HttpFilter, HttpFilterFactory, Reply, RequestHead, ResponseHead};
use strait_model::{
    extension::Extension,
    policy::Fraction,
    ratelimit::{RateLimit, RequestType, VhRateLimits, XRateLimitHeaders, type_url},
};

use crate::{
    descriptor::{self, Facts, Selection},
    rls::{self, Answer, Code, Status},
    stats::ByCluster,
};

static RATELIMITED: HeaderName = HeaderName::from_static("x-envoy-ratelimited");
static INTERNAL: HeaderName = HeaderName::from_static("x-envoy-internal");

/// The factory of `envoy.filters.http.ratelimit`.
#[derive(Debug, Default, Clone, Copy)]
pub struct RateLimitFactory;

impl HttpFilterFactory for RateLimitFactory {
    fn type_url(&self) -> &str {
        type_url::HTTP_GLOBAL
    }

    fn create(&self, config: &Extension) -> Result<Arc<dyn HttpFilter>, String> {
        let config = config
            .get::<RateLimit>()
            .ok_or("rate limit config of the wrong type")?;
        Ok(Arc::new(RateLimitFilter {
            config: config.clone(),
            stats: ByCluster::default(),
        }))
    }
}

struct RateLimitFilter {
    config: RateLimit,
    stats: ByCluster,
}

/// Response headers to add when the response passes.
#[derive(Clone)]
struct AddToResponse(Vec<(HeaderName, HeaderValue)>);

fn hits(f: Fraction) -> bool {
    f.per_million >= 1_000_000
        || (strait_codec::headers::random_u64() % 1_000_000) < u64::from(f.per_million)
}

/// Envoy's `x-ratelimit-*` from the service's statuses: the one with the
/// fewest remaining requests decides limit, remaining and reset; the
/// limit also lists every status's quota policy (`, 10;w=60;name="x"`).
pub fn x_ratelimit_headers(statuses: &[Status]) -> Vec<(HeaderName, HeaderValue)> {
    let Some(min) = statuses.iter().reduce(|a, b| {
        if b.limit_remaining < a.limit_remaining {
            b
        } else {
            a
        }
    }) else {
        return Vec::new();
    };
    let mut limit = min.requests_per_unit.to_string();
    for s in statuses.iter().filter(|s| s.window != 0) {
        limit.push_str(&format!(", {};w={}", s.requests_per_unit, s.window));
        if !s.name.is_empty() {
            limit.push_str(&format!(";name=\"{}\"", s.name));
        }
    }
    let mut out = Vec::with_capacity(3);
    for (name, value) in [
        ("x-ratelimit-limit", limit),
        ("x-ratelimit-remaining", min.limit_remaining.to_string()),
        ("x-ratelimit-reset", min.reset_seconds.to_string()),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            out.push((HeaderName::from_static(name), v));
        }
    }
    out
}

impl RateLimitFilter {
    /// Whether this request is one the filter asks about.
    fn applies(&self, req: &RequestHead<'_>) -> bool {
        let internal = req
            .head
            .headers
            .get(&INTERNAL)
            .is_some_and(|v| v.as_bytes() == b"true");
        match self.config.request_type {
            RequestType::Both => true,
            RequestType::Internal => internal,
            RequestType::External => !internal,
        }
    }

    fn decide<'x>(
        &self,
        req: &mut RequestHead<'_>,
        cluster: &str,
        answer: Result<Answer, crate::RateLimitError>,
    ) -> Decision<'x> {
        let c = &self.config;
        let stats = self.stats.get(cluster, req.info.upstreams);
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(cluster = %c.cluster, error = %e, "rate limit call failed");
                stats.error.increment(1);
                if c.failure_mode_deny {
                    let status = StatusCode::from_u16(c.status_on_error)
                        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                    return Decision::Respond(
                        Reply::new(status)
                            .flag("RLSE")
                            .details("rate_limiter_error"),
                    );
                }
                stats.failure_mode_allowed.increment(1);
                return Decision::Continue;
            }
        };
        let mut response = answer.response_headers;
        if answer.code == Code::OverLimit {
            stats.over_limit.increment(1);
            if !c.disable_x_envoy_ratelimited_header {
                response.push((RATELIMITED.clone(), HeaderValue::from_static("true")));
            }
        } else {
            stats.ok.increment(1);
        }
        if c.x_ratelimit_headers == XRateLimitHeaders::Draft03 {
            response.extend(x_ratelimit_headers(&answer.statuses));
        }
        if answer.code == Code::OverLimit && hits(c.filter_enforced) {
            let mut headers = HeaderMap::new();
            for (n, v) in response {
                headers.append(n, v);
            }
            let status = StatusCode::from_u16(c.rate_limited_status)
                .unwrap_or(StatusCode::TOO_MANY_REQUESTS);
            return Decision::Respond(
                Reply::new(status)
                    .body(answer.body)
                    .headers(headers)
                    .flag("RL")
                    .details("request_rate_limited"),
            );
        }
        for (n, v) in answer.request_headers {
            req.head.headers.append(n, v);
        }
        if !response.is_empty() {
            req.state.insert(AddToResponse(response));
        }
        Decision::Continue
    }
}

impl HttpFilter for RateLimitFilter {
    fn on_request<'a>(&'a self, req: &'a mut RequestHead<'_>) -> Decision<'a> {
        let c = &self.config;
        if !hits(c.filter_enabled) || !self.applies(req) {
            return Decision::Continue;
        }
        // Envoy asks only for a request routed to a cluster that exists.
        let Some(cluster) = req.info.cluster else {
            return Decision::Continue;
        };
        if req.info.upstreams.get(cluster).is_none() {
            return Decision::Continue;
        }
        let facts = Facts {
            headers: &req.head.headers,
            remote: req.info.remote,
            cluster: Some(cluster),
        };
        let select = Selection {
            stage: c.stage,
            vh_rate_limits: VhRateLimits::Override,
            skip_disable_keys: false,
        };
        let descriptors = descriptor::for_route(req.info.rate_limits, select, &facts);
        if descriptors.is_empty() {
            return Decision::Continue;
        }
        let body = rls::request(&c.domain, &descriptors);
        drop(descriptors);
        Decision::Pause(Box::pin(async move {
            let answer = rls::call(
                req.info.upstreams,
                &c.cluster,
                &c.authority,
                body,
                c.timeout,
            )
            .await;
            self.decide(req, cluster, answer)
        }))
    }

    fn on_response(&self, resp: &mut ResponseHead<'_>) {
        if let Some(AddToResponse(add)) = resp.state.get::<AddToResponse>() {
            for (n, v) in add {
                resp.headers.append(n.clone(), v.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x_headers_from_the_tightest_status() {
        let statuses = [
            Status {
                requests_per_unit: 10,
                window: 60,
                name: "per-test".to_owned(),
                limit_remaining: 7,
                reset_seconds: 30,
            },
            Status {
                requests_per_unit: 100,
                window: 3600,
                name: String::new(),
                limit_remaining: 3,
                reset_seconds: 30,
            },
        ];
        let h: Vec<_> = x_ratelimit_headers(&statuses)
            .into_iter()
            .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap_or("")))
            .collect();
        assert_eq!(
            h,
            [
                "x-ratelimit-limit: 100, 10;w=60;name=\"per-test\", 100;w=3600",
                "x-ratelimit-remaining: 3",
                "x-ratelimit-reset: 30",
            ]
        );
        assert!(x_ratelimit_headers(&[]).is_empty());
    }
}
