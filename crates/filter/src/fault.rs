//! `envoy.filters.http.fault`: delays and aborts chosen per request.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use strait_model::{
    filter::{FaultAbortKind, FaultConfig, FaultDelayKind},
    policy::Fraction,
};

pub static DELAY_HEADER: HeaderName = HeaderName::from_static("x-envoy-fault-delay-request");
pub static ABORT_HEADER: HeaderName = HeaderName::from_static("x-envoy-fault-abort-request");
pub static ABORT_GRPC_HEADER: HeaderName =
    HeaderName::from_static("x-envoy-fault-abort-grpc-request");
pub static DELAY_PERCENTAGE_HEADER: HeaderName =
    HeaderName::from_static("x-envoy-fault-delay-request-percentage");
pub static ABORT_PERCENTAGE_HEADER: HeaderName =
    HeaderName::from_static("x-envoy-fault-abort-request-percentage");

/// The body Envoy sends with an injected abort.
pub const ABORT_BODY: &str = "fault filter abort";

/// What the fault filter does to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FaultPlan {
    /// Wait this long before going on (response flag `DI`).
    pub delay: Option<Duration>,
    /// Then answer locally instead of forwarding (response flag `FI`).
    pub abort: Option<Abort>,
}

impl FaultPlan {
    pub fn is_empty(&self) -> bool {
        self.delay.is_none() && self.abort.is_none()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abort {
    Http(StatusCode),
    /// A trailers-only gRPC response with this `grpc-status`.
    Grpc(u32),
}

/// Decides the faults for one request.
///
/// `cluster` is the upstream cluster the route picked (for
/// `upstream_cluster`), `active` the faults now in progress (for
/// `max_active_faults`), and `roll` yields independent uniform numbers in
/// `0..1_000_000` (one per percentage checked). Pure and allocation-free.
pub fn plan(
    cfg: &FaultConfig,
    headers: &HeaderMap,
    cluster: Option<&str>,
    active: u64,
    mut roll: impl FnMut() -> u32,
) -> FaultPlan {
    if let Some(want) = &cfg.upstream_cluster
        && cluster != Some(want.as_str())
    {
        return FaultPlan::default();
    }
    if !cfg.headers.iter().all(|h| h.matches(headers)) {
        return FaultPlan::default();
    }
    if cfg
        .max_active_faults
        .is_some_and(|max| active >= u64::from(max))
    {
        return FaultPlan::default();
    }
    let delay = cfg.delay.as_ref().and_then(|d| {
        let (length, percentage) = match d.kind {
            FaultDelayKind::Fixed(t) => (Some(t), d.percentage),
            FaultDelayKind::Header => (
                number(headers, &DELAY_HEADER).map(Duration::from_millis),
                header_percentage(
                    headers,
                    &DELAY_PERCENTAGE_HEADER,
                    d.percentage,
                    d.percentage_scale,
                ),
            ),
        };
        percentage.hits(roll()).then_some(length?)
    });
    let abort = cfg.abort.as_ref().and_then(|a| {
        let (kind, percentage) = match a.kind {
            FaultAbortKind::Http(s) => {
                (StatusCode::from_u16(s).ok().map(Abort::Http), a.percentage)
            }
            FaultAbortKind::Grpc(s) => (Some(Abort::Grpc(s)), a.percentage),
            FaultAbortKind::Header => (
                header_abort(headers),
                header_percentage(
                    headers,
                    &ABORT_PERCENTAGE_HEADER,
                    a.percentage,
                    a.percentage_scale,
                ),
            ),
        };
        percentage.hits(roll()).then_some(kind?)
    });
    FaultPlan { delay, abort }
}

/// `x-envoy-fault-abort-request` (an HTTP status in 200..600), else
/// `x-envoy-fault-abort-grpc-request` (a gRPC status).
fn header_abort(headers: &HeaderMap) -> Option<Abort> {
    if let Some(s) = number(headers, &ABORT_HEADER) {
        return u16::try_from(s)
            .ok()
            .filter(|s| (200..600).contains(s))
            .and_then(|s| StatusCode::from_u16(s).ok())
            .map(Abort::Http);
    }
    number(headers, &ABORT_GRPC_HEADER)
        .and_then(|s| u32::try_from(s).ok())
        .map(Abort::Grpc)
}

/// A header-controlled fault's percentage: the header's numerator, in the
/// configured denominator's units and capped by the configured numerator,
/// as Envoy does; the configured percentage when the header is absent or
/// not a number.
fn header_percentage(
    headers: &HeaderMap,
    name: &HeaderName,
    configured: Fraction,
    scale: u32,
) -> Fraction {
    match number(headers, name) {
        Some(n) => Fraction {
            per_million: u32::try_from(n.saturating_mul(u64::from(scale)))
                .unwrap_or(u32::MAX)
                .min(configured.per_million),
        },
        None => configured,
    }
}

fn number(headers: &HeaderMap, name: &HeaderName) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// The head of an abort response: status and headers (the body is
/// [`ABORT_BODY`] for HTTP aborts, empty for gRPC ones).
pub fn abort_head(abort: Abort) -> (StatusCode, [(HeaderName, HeaderValue); 2], bool) {
    match abort {
        Abort::Http(status) => (
            status,
            [
                (
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain"),
                ),
                (
                    HeaderName::from_static("x-envoy-fault"),
                    HeaderValue::from_static("abort"),
                ),
            ],
            true,
        ),
        Abort::Grpc(code) => (
            StatusCode::OK,
            [
                (
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/grpc"),
                ),
                (
                    HeaderName::from_static("grpc-status"),
                    HeaderValue::from(code),
                ),
            ],
            false,
        ),
    }
}

#[cfg(test)]
mod tests {
    use strait_model::filter::{FaultAbort, FaultDelay};

    use super::*;

    fn cfg(delay: Option<FaultDelayKind>, abort: Option<FaultAbortKind>, pct: u32) -> FaultConfig {
        let percentage = Fraction { per_million: pct };
        FaultConfig {
            delay: delay.map(|kind| FaultDelay {
                kind,
                percentage,
                percentage_scale: 10_000,
            }),
            abort: abort.map(|kind| FaultAbort {
                kind,
                percentage,
                percentage_scale: 10_000,
            }),
            max_active_faults: None,
            upstream_cluster: None,
            headers: Vec::new(),
        }
    }

    #[test]
    fn fixed_faults_at_full_percentage() {
        let c = cfg(
            Some(FaultDelayKind::Fixed(Duration::from_millis(5))),
            Some(FaultAbortKind::Http(503)),
            1_000_000,
        );
        let p = plan(&c, &HeaderMap::new(), None, 0, || 999_999);
        assert_eq!(p.delay, Some(Duration::from_millis(5)));
        assert_eq!(p.abort, Some(Abort::Http(StatusCode::SERVICE_UNAVAILABLE)));
    }

    #[test]
    fn percentage_and_limits() {
        let c = cfg(None, Some(FaultAbortKind::Http(500)), 500_000);
        assert!(
            plan(&c, &HeaderMap::new(), None, 0, || 499_999)
                .abort
                .is_some()
        );
        assert!(
            plan(&c, &HeaderMap::new(), None, 0, || 500_000)
                .abort
                .is_none()
        );
        let mut limited = c.clone();
        limited.max_active_faults = Some(2);
        assert!(plan(&limited, &HeaderMap::new(), None, 2, || 0).is_empty());
        let mut only = c;
        only.upstream_cluster = Some("a".into());
        assert!(plan(&only, &HeaderMap::new(), Some("b"), 0, || 0).is_empty());
        assert!(!plan(&only, &HeaderMap::new(), Some("a"), 0, || 0).is_empty());
    }

    #[test]
    fn header_controlled_faults() {
        let c = cfg(
            Some(FaultDelayKind::Header),
            Some(FaultAbortKind::Header),
            1_000_000,
        );
        assert!(plan(&c, &HeaderMap::new(), None, 0, || 0).is_empty());
        let mut h = HeaderMap::new();
        h.insert(&DELAY_HEADER, HeaderValue::from_static("20"));
        h.insert(&ABORT_GRPC_HEADER, HeaderValue::from_static("14"));
        let p = plan(&c, &h, None, 0, || 0);
        assert_eq!(p.delay, Some(Duration::from_millis(20)));
        assert_eq!(p.abort, Some(Abort::Grpc(14)));
        h.insert(&ABORT_HEADER, HeaderValue::from_static("429"));
        let p = plan(&c, &h, None, 0, || 0);
        assert_eq!(p.abort, Some(Abort::Http(StatusCode::TOO_MANY_REQUESTS)));
    }

    #[test]
    fn percentage_headers_scale_and_cap_header_faults() {
        // Configured: 50 of HUNDRED, i.e. half of the requests at most.
        let c = cfg(
            Some(FaultDelayKind::Header),
            Some(FaultAbortKind::Header),
            500_000,
        );
        let mut h = HeaderMap::new();
        h.insert(&DELAY_HEADER, HeaderValue::from_static("20"));
        h.insert(&ABORT_HEADER, HeaderValue::from_static("503"));
        h.insert(&ABORT_PERCENTAGE_HEADER, HeaderValue::from_static("10"));
        h.insert(&DELAY_PERCENTAGE_HEADER, HeaderValue::from_static("90"));
        // Abort: 10% from the header; delay: 90% capped to the configured 50%.
        let p = plan(&c, &h, None, 0, || 99_999);
        assert!(p.abort.is_some() && p.delay.is_some());
        let p = plan(&c, &h, None, 0, || 100_000);
        assert!(p.abort.is_none() && p.delay.is_some());
        let p = plan(&c, &h, None, 0, || 500_000);
        assert!(p.abort.is_none() && p.delay.is_none());
        // Not a number: the configured percentage.
        h.insert(&ABORT_PERCENTAGE_HEADER, HeaderValue::from_static("x"));
        assert!(plan(&c, &h, None, 0, || 499_999).abort.is_some());
        // Fixed faults ignore the headers.
        let fixed = cfg(None, Some(FaultAbortKind::Http(503)), 500_000);
        h.insert(&ABORT_PERCENTAGE_HEADER, HeaderValue::from_static("0"));
        assert!(plan(&fixed, &h, None, 0, || 0).abort.is_some());
    }
}
