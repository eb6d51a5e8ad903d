//! A rate-limit service for tests (`envoy.service.ratelimit.v3.
//! RateLimitService/ShouldRateLimit`), with a fixed policy so a test can
//! run Strait and Envoy against it and compare what they did.
//!
//! The policy, read from the request's descriptors:
//! - an entry with value `over`: OVER_LIMIT, with the body
//!   `over limit (rls)` and response headers `x-rls: over` and
//!   `content-type: text/rls`;
//! - an entry with value `boom`: the call fails (gRPC UNAVAILABLE);
//! - anything else: OK, with response header `x-rls: ok`, request header
//!   `x-rls-seen` (the domain and descriptors the service got, as
//!   `domain|k=v,k=v;k=v`, so the upstream shows what each proxy sent),
//!   and a status per descriptor for `x-ratelimit-*` headers (limit 10
//!   per minute named `per-test`, 7 remaining, reset in 30 s; the second
//!   descriptor, if any, 100 per hour with 3 remaining).

use envoy_types::pb::{
    envoy::{
        config::core::v3::HeaderValue,
        service::ratelimit::v3::{
            RateLimitRequest, RateLimitResponse,
            rate_limit_response::{Code, DescriptorStatus, RateLimit, rate_limit::Unit},
            rate_limit_service_server::{RateLimitService, RateLimitServiceServer},
        },
    },
    google::protobuf::Duration,
};

use crate::upstream::{Upstream, grpc_server};

fn header(key: &str, value: &str) -> HeaderValue {
    HeaderValue {
        key: key.to_owned(),
        value: value.to_owned(),
        ..Default::default()
    }
}

struct Rls;

#[tonic::async_trait]
impl RateLimitService for Rls {
    async fn should_rate_limit(
        &self,
        request: tonic::Request<RateLimitRequest>,
    ) -> Result<tonic::Response<RateLimitResponse>, tonic::Status> {
        let r = request.into_inner();
        let has = |v: &str| {
            r.descriptors
                .iter()
                .flat_map(|d| &d.entries)
                .any(|e| e.value == v)
        };
        if has("boom") {
            return Err(tonic::Status::unavailable("rate limit service down"));
        }
        if has("over") {
            return Ok(tonic::Response::new(RateLimitResponse {
                overall_code: Code::OverLimit as i32,
                response_headers_to_add: vec![
                    header("x-rls", "over"),
                    header("content-type", "text/rls"),
                ],
                raw_body: b"over limit (rls)".to_vec(),
                ..Default::default()
            }));
        }
        let seen = r
            .descriptors
            .iter()
            .map(|d| {
                d.entries
                    .iter()
                    .map(|e| format!("{}={}", e.key, e.value))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect::<Vec<_>>()
            .join(";");
        let status = |i: usize| {
            let (per_unit, unit, remaining, name) = if i == 0 {
                (10, Unit::Minute, 7, "per-test")
            } else {
                (100, Unit::Hour, 3, "")
            };
            DescriptorStatus {
                code: Code::Ok as i32,
                current_limit: Some(RateLimit {
                    name: name.to_owned(),
                    requests_per_unit: per_unit,
                    unit: unit as i32,
                }),
                limit_remaining: remaining,
                duration_until_reset: Some(Duration {
                    seconds: 30,
                    nanos: 0,
                }),
                quota: None,
            }
        };
        Ok(tonic::Response::new(RateLimitResponse {
            overall_code: Code::Ok as i32,
            statuses: (0..r.descriptors.len()).map(status).collect(),
            response_headers_to_add: vec![header("x-rls", "ok")],
            request_headers_to_add: vec![header("x-rls-seen", &format!("{}|{seen}", r.domain))],
            ..Default::default()
        }))
    }
}

/// The rate-limit service (HTTP/2 cleartext) on a loopback port.
pub fn rate_limit_service() -> Upstream {
    grpc_server(RateLimitServiceServer::new(Rls))
}
