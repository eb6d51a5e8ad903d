//! Keeping traffic off broken hosts: circuit breakers, outlier detection,
//! active health checks, and connection pool limits.

use std::time::Duration;

use envoy_types::pb::envoy::config::{
    cluster::v3::{
        CircuitBreakers, OutlierDetection,
        circuit_breakers::{Thresholds, thresholds::RetryBudget},
    },
    core::v3::{
        HealthCheck, HttpProtocolOptions, RoutingPriority,
        health_check::{
            GrpcHealthCheck, HealthChecker, HttpHealthCheck, Payload, TcpHealthCheck,
            payload::Payload as PayloadKind,
        },
    },
};

use super::super::{Context, at, duration, item, positive_duration, u32_value};
use crate::model;

pub(super) fn circuit_breakers(
    cx: &mut Context,
    path: &str,
    cb: &Option<CircuitBreakers>,
) -> model::CircuitBreakers {
    let mut out = model::CircuitBreakers::default();
    let Some(CircuitBreakers {
        thresholds,
        per_host_thresholds,
    }) = cb
    else {
        return out;
    };
    reject_set!(cx, path; per_host_thresholds);
    let mut seen = [false; 2];
    for (i, t) in thresholds.iter().enumerate() {
        let tpath = item(path, "thresholds", i);
        let Thresholds {
            priority,
            max_connections,
            max_pending_requests,
            max_requests,
            max_retries,
            retry_budget,
            // Only adds `remaining_*` gauges.
            track_remaining: _,
            max_connection_pools,
        } = t;
        reject_set!(cx, &tpath; max_connection_pools);
        let slot = match RoutingPriority::try_from(*priority) {
            Ok(RoutingPriority::Default) => 0,
            Ok(RoutingPriority::High) => 1,
            Err(_) => {
                cx.invalid(
                    at(&tpath, "priority"),
                    format!("unknown priority {priority}"),
                );
                continue;
            }
        };
        if std::mem::replace(&mut seen[slot], true) {
            cx.invalid(
                at(&tpath, "priority"),
                "thresholds for this priority given twice",
            );
        }
        let d = model::Thresholds::default();
        let budget = retry_budget.as_ref().map(|b| {
            let RetryBudget {
                budget_percent,
                min_retry_concurrency,
                // The budget is judged on requests active now; Envoy's
                // interval only smooths that.
                budget_interval: _,
            } = b;
            let percent = budget_percent.as_ref().map_or(20.0, |p| p.value);
            if !(0.0..=100.0).contains(&percent) {
                cx.invalid(
                    at(&at(&tpath, "retry_budget"), "budget_percent"),
                    "must be 0-100",
                );
            }
            model::RetryBudget {
                budget_percent: percent,
                min_retry_concurrency: u32_value(min_retry_concurrency, 3),
            }
        });
        let t = model::Thresholds {
            max_connections: u32_value(max_connections, d.max_connections),
            max_pending_requests: u32_value(max_pending_requests, d.max_pending_requests),
            max_requests: u32_value(max_requests, d.max_requests),
            max_retries: u32_value(max_retries, d.max_retries),
            retry_budget: budget,
        };
        if slot == 0 {
            out.default = t;
        } else {
            out.high = t;
        }
    }
    out
}

pub(super) fn outlier_detection(
    cx: &mut Context,
    path: &str,
    od: &OutlierDetection,
) -> model::OutlierDetection {
    let OutlierDetection {
        consecutive_5xx,
        interval,
        base_ejection_time,
        max_ejection_percent,
        enforcing_consecutive_5xx,
        enforcing_success_rate,
        success_rate_minimum_hosts,
        success_rate_request_volume,
        success_rate_stdev_factor,
        consecutive_gateway_failure,
        enforcing_consecutive_gateway_failure,
        split_external_local_origin_errors,
        consecutive_local_origin_failure,
        enforcing_consecutive_local_origin_failure,
        enforcing_local_origin_success_rate,
        failure_percentage_threshold,
        enforcing_failure_percentage,
        enforcing_failure_percentage_local_origin,
        failure_percentage_minimum_hosts,
        failure_percentage_request_volume,
        max_ejection_time,
        max_ejection_time_jitter,
        successful_active_health_check_uneject_host,
        monitors,
        always_eject_one_host,
        detect_degraded_hosts,
    } = od;
    reject_set!(cx, path;
        enforcing_local_origin_success_rate, enforcing_failure_percentage_local_origin,
        max_ejection_time_jitter, successful_active_health_check_uneject_host, monitors,
        always_eject_one_host, detect_degraded_hosts,
    );
    let mut percent = |field: &str, v: &Option<_>, default: u32| {
        let v = u32_value(v, default);
        if v > 100 {
            cx.invalid(at(path, field), "must be 0-100");
        }
        v.min(100)
    };
    let max_ejection_percent = percent("max_ejection_percent", max_ejection_percent, 10);
    let enforcing_consecutive_5xx =
        percent("enforcing_consecutive_5xx", enforcing_consecutive_5xx, 100);
    let enforcing_consecutive_gateway_failure = percent(
        "enforcing_consecutive_gateway_failure",
        enforcing_consecutive_gateway_failure,
        0,
    );
    let enforcing_consecutive_local_origin_failure = percent(
        "enforcing_consecutive_local_origin_failure",
        enforcing_consecutive_local_origin_failure,
        100,
    );
    let enforcing_success_rate = percent("enforcing_success_rate", enforcing_success_rate, 100);
    let failure_percentage_threshold = percent(
        "failure_percentage_threshold",
        failure_percentage_threshold,
        85,
    );
    let enforcing_failure_percentage = percent(
        "enforcing_failure_percentage",
        enforcing_failure_percentage,
        0,
    );
    let base = positive_duration(
        cx,
        &at(path, "base_ejection_time"),
        base_ejection_time,
        Duration::from_secs(30),
    );
    model::OutlierDetection {
        consecutive_5xx: u32_value(consecutive_5xx, 5),
        consecutive_gateway_failure: u32_value(consecutive_gateway_failure, 5),
        consecutive_local_origin_failure: u32_value(consecutive_local_origin_failure, 5),
        split_external_local_origin_errors: *split_external_local_origin_errors,
        interval: positive_duration(cx, &at(path, "interval"), interval, Duration::from_secs(10)),
        base_ejection_time: base,
        max_ejection_time: positive_duration(
            cx,
            &at(path, "max_ejection_time"),
            max_ejection_time,
            Duration::from_secs(300),
        )
        .max(base),
        max_ejection_percent,
        enforcing_consecutive_5xx,
        enforcing_consecutive_gateway_failure,
        enforcing_consecutive_local_origin_failure,
        enforcing_success_rate,
        success_rate_minimum_hosts: u32_value(success_rate_minimum_hosts, 5),
        success_rate_request_volume: u32_value(success_rate_request_volume, 100),
        success_rate_stdev_factor: u32_value(success_rate_stdev_factor, 1900),
        failure_percentage_threshold,
        enforcing_failure_percentage,
        failure_percentage_minimum_hosts: u32_value(failure_percentage_minimum_hosts, 5),
        failure_percentage_request_volume: u32_value(failure_percentage_request_volume, 50),
    }
}

pub(super) fn health_check(
    cx: &mut Context,
    path: &str,
    hc: &HealthCheck,
) -> Option<model::HealthCheck> {
    let HealthCheck {
        timeout,
        interval,
        initial_jitter,
        interval_jitter,
        interval_jitter_percent,
        unhealthy_threshold,
        healthy_threshold,
        alt_port,
        reuse_connection,
        // Strait checks at `interval` whether or not the cluster has traffic:
        // more checks than Envoy on idle clusters, never fewer.
        no_traffic_interval: _,
        no_traffic_healthy_interval: _,
        unhealthy_interval,
        unhealthy_edge_interval,
        healthy_edge_interval,
        event_log_path,
        event_logger,
        event_service,
        always_log_health_check_failures: _,
        always_log_health_check_success: _,
        tls_options,
        transport_socket_match_criteria,
        health_checker,
    } = hc;
    reject_set!(cx, path;
        initial_jitter, interval_jitter_percent, alt_port, unhealthy_interval,
        unhealthy_edge_interval, healthy_edge_interval, event_log_path, event_logger,
        event_service, tls_options, transport_socket_match_criteria,
    );
    // Each check opens a fresh connection; with `reuse_connection` (Envoy's
    // default) the results are the same, only the socket churn differs.
    let _ = reuse_connection;
    let Some(timeout) = timeout
        .as_ref()
        .and_then(|d| duration(cx, &at(path, "timeout"), d))
    else {
        cx.invalid(at(path, "timeout"), "is required");
        return None;
    };
    let Some(interval) = interval
        .as_ref()
        .and_then(|d| duration(cx, &at(path, "interval"), d))
        .filter(|d| !d.is_zero())
    else {
        cx.invalid(
            at(path, "interval"),
            "is required and must be greater than 0s",
        );
        return None;
    };
    let interval_jitter = interval_jitter
        .as_ref()
        .and_then(|d| duration(cx, &at(path, "interval_jitter"), d))
        .unwrap_or_default();
    let (Some(unhealthy), Some(healthy)) = (unhealthy_threshold, healthy_threshold) else {
        cx.invalid(
            path,
            "unhealthy_threshold and healthy_threshold are required",
        );
        return None;
    };
    let kind = match health_checker {
        Some(HealthChecker::HttpHealthCheck(h)) => {
            http_check(cx, &at(path, "http_health_check"), h)?
        }
        Some(HealthChecker::TcpHealthCheck(t)) => tcp_check(cx, &at(path, "tcp_health_check"), t)?,
        Some(HealthChecker::GrpcHealthCheck(GrpcHealthCheck {
            service_name,
            authority,
            initial_metadata,
        })) => {
            let gpath = at(path, "grpc_health_check");
            reject_set!(cx, &gpath; initial_metadata);
            model::HealthCheckKind::Grpc {
                service_name: service_name.clone(),
                authority: (!authority.is_empty()).then(|| authority.clone()),
            }
        }
        Some(HealthChecker::CustomHealthCheck(_)) => {
            cx.unsupported(at(path, "custom_health_check"), "custom_health_check");
            return None;
        }
        None => {
            cx.invalid(
                path,
                "needs http_health_check, tcp_health_check or grpc_health_check",
            );
            return None;
        }
    };
    Some(model::HealthCheck {
        timeout,
        interval,
        interval_jitter,
        healthy_threshold: healthy.value.max(1),
        unhealthy_threshold: unhealthy.value.max(1),
        kind,
    })
}

fn http_check(cx: &mut Context, path: &str, h: &HttpHealthCheck) -> Option<model::HealthCheckKind> {
    let HttpHealthCheck {
        host,
        path: hc_path,
        send,
        receive,
        response_buffer_size,
        request_headers_to_add,
        request_headers_to_remove,
        expected_statuses,
        retriable_statuses,
        codec_client_type,
        service_name_matcher,
        method,
    } = h;
    reject_set!(cx, path;
        send, receive, response_buffer_size, request_headers_to_remove, retriable_statuses,
        codec_client_type, service_name_matcher, method,
    );
    if !hc_path.starts_with('/') {
        cx.invalid(at(path, "path"), "must start with '/'");
        return None;
    }
    let mut statuses = Vec::new();
    for (i, r) in expected_statuses.iter().enumerate() {
        if !(100..=600).contains(&r.start) || !(100..=600).contains(&r.end) || r.start >= r.end {
            cx.invalid(
                item(path, "expected_statuses", i),
                "must be a range within [100, 600)",
            );
            continue;
        }
        statuses.push((r.start as u16, r.end as u16));
    }
    if statuses.is_empty() {
        statuses.push((200, 400));
    }
    let mut headers = Vec::new();
    for (i, o) in request_headers_to_add.iter().enumerate() {
        let hpath = item(path, "request_headers_to_add", i);
        match &o.header {
            Some(h) if !h.key.is_empty() => {
                let value = if h.raw_value.is_empty() {
                    h.value.clone()
                } else {
                    String::from_utf8_lossy(&h.raw_value).into_owned()
                };
                headers.push((h.key.to_ascii_lowercase(), value));
            }
            _ => cx.invalid(at(&hpath, "header"), "needs a key"),
        }
    }
    Some(model::HealthCheckKind::Http {
        path: hc_path.clone(),
        host: (!host.is_empty()).then(|| host.clone()),
        expected_statuses: statuses,
        request_headers: headers,
    })
}

fn tcp_check(cx: &mut Context, path: &str, t: &TcpHealthCheck) -> Option<model::HealthCheckKind> {
    let TcpHealthCheck {
        send,
        receive,
        proxy_protocol_config,
    } = t;
    reject_set!(cx, path; proxy_protocol_config);
    let send = match send {
        Some(p) => payload(cx, &at(path, "send"), p)?,
        None => Vec::new(),
    };
    let mut blocks = Vec::new();
    for (i, p) in receive.iter().enumerate() {
        blocks.push(payload(cx, &item(path, "receive", i), p)?);
    }
    Some(model::HealthCheckKind::Tcp {
        send,
        receive: blocks,
    })
}

fn payload(cx: &mut Context, path: &str, p: &Payload) -> Option<Vec<u8>> {
    match &p.payload {
        Some(PayloadKind::Binary(b)) => Some(b.clone()),
        Some(PayloadKind::Text(hex)) => {
            let bytes = hex_decode(hex);
            if bytes.is_none() {
                cx.invalid(at(path, "text"), "must be hex");
            }
            bytes
        }
        None => {
            cx.invalid(path, "needs text or binary");
            None
        }
    }
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.as_bytes();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    s.chunks(2)
        .map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?))
        .collect()
}

/// Pool limits from `common_http_protocol_options` (in the typed
/// `HttpProtocolOptions` or the deprecated cluster field).
pub(super) fn pool_options(
    cx: &mut Context,
    path: &str,
    common: Option<&HttpProtocolOptions>,
    cluster_max_requests: Option<u32>,
) -> model::PoolOptions {
    let mut out = model::PoolOptions {
        max_requests_per_connection: cluster_max_requests.filter(|&n| n > 0),
        ..model::PoolOptions::default()
    };
    let Some(o) = common else { return out };
    let HttpProtocolOptions {
        idle_timeout,
        max_connection_duration,
        max_connection_duration_jitter,
        max_headers_count,
        max_response_headers_kb,
        max_stream_duration,
        headers_with_underscores_action,
        max_requests_per_connection,
    } = o;
    reject_set!(cx, path;
        max_connection_duration, max_connection_duration_jitter, max_headers_count,
        max_response_headers_kb, max_stream_duration, headers_with_underscores_action,
    );
    if let Some(d) = idle_timeout {
        out.idle_timeout = duration(cx, &at(path, "idle_timeout"), d).filter(|d| !d.is_zero());
    }
    if let Some(n) = max_requests_per_connection {
        out.max_requests_per_connection = (n.value > 0).then_some(n.value);
    }
    out
}
