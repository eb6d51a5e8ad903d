//! Runs the connection manager's HTTP filters around the router: the decode
//! pass on the request head (fault, CORS preflight, request header
//! mutation), and the encode pass on the response head (CORS headers,
//! response header mutation), in reverse order as Envoy runs encoders.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::{HeaderValue, Response, request::Parts};
use strait_codec::Body;
use strait_filter::{
    Active, active,
    cors::{self, CorsDecision},
    fault::{self, Abort},
    mutation,
};
use strait_model::{
    HttpFilter,
    filter::{CorsPolicy, FilterOverride},
};

use crate::{body::ProxyBody, stats::HttpStats};

/// What the encode pass needs from the decode pass.
#[derive(Debug, Default)]
pub(crate) struct EncodeState<'a> {
    filters: &'a [HttpFilter],
    overrides: &'a [FilterOverride],
    /// How many filters ran their decode step (encoders run for those).
    ran: usize,
    /// The CORS policy and origin of an allowed cross-origin request.
    cors: Option<(&'a CorsPolicy, HeaderValue)>,
}

/// The decode pass's verdict: `reply` is set when a filter answered (a
/// fault abort or a CORS preflight); the reply still goes through the encode
/// pass of the filters before the one that answered.
#[derive(Debug)]
pub(crate) struct Decoded<'a> {
    pub(crate) reply: Option<Response<ProxyBody>>,
    pub(crate) state: EncodeState<'a>,
}

/// Decrements the active-fault gauge when the fault is over.
struct FaultGuard<'a>(&'a HttpStats);

impl Drop for FaultGuard<'_> {
    fn drop(&mut self) {
        self.0.active_faults.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Runs the decode pass. `cluster` is the route's cluster (for the fault
/// filter's `upstream_cluster`). A fault delay sleeps here. Allocation-free
/// unless a filter answers or adds headers.
pub(crate) async fn decode<'a>(
    filters: &'a [HttpFilter],
    overrides: &'a [FilterOverride],
    head: &mut Parts,
    cluster: Option<&str>,
    stats: &HttpStats,
) -> Decoded<'a> {
    let mut state = EncodeState {
        filters,
        overrides,
        ran: 0,
        cors: None,
    };
    for (i, f) in filters.iter().enumerate() {
        state.ran = i;
        let Some(act) = active(f, overrides) else {
            continue;
        };
        match act {
            Active::Fault(cfg) => {
                let now = stats.active_faults.load(Ordering::Acquire);
                let plan = fault::plan(cfg, &head.headers, cluster, now, roll);
                if plan.is_empty() {
                    continue;
                }
                stats.active_faults.fetch_add(1, Ordering::AcqRel);
                let _guard = FaultGuard(stats);
                if let Some(d) = plan.delay {
                    stats.fault_delays.increment(1);
                    tracing::debug!(response_flags = "DI", delay = ?d, "fault delay");
                    tokio::time::sleep(d).await;
                }
                if let Some(abort) = plan.abort {
                    stats.fault_aborts.increment(1);
                    tracing::debug!(response_flags = "FI", "fault abort");
                    return Decoded {
                        reply: Some(abort_response(abort)),
                        state,
                    };
                }
            }
            Active::Cors(policy) => {
                let enabled = policy.enabled.hits(roll());
                match cors::decide(policy, &head.method, &head.headers, enabled) {
                    CorsDecision::Pass => {}
                    CorsDecision::Actual(origin) => state.cors = Some((policy, origin)),
                    CorsDecision::Preflight(headers) => {
                        let mut r = Response::new(ProxyBody::Local(Body::Empty));
                        *r.headers_mut() = headers;
                        return Decoded {
                            reply: Some(r),
                            state,
                        };
                    }
                }
            }
            Active::HeaderMutation {
                filter,
                route,
                most_specific_wins,
            } => {
                mutation::apply_levels(filter, route, most_specific_wins, &mut head.headers, |m| {
                    &m.request
                });
            }
        }
    }
    state.ran = filters.len();
    Decoded { reply: None, state }
}

/// Runs the encode pass over a response head.
pub(crate) fn encode<B>(state: &EncodeState<'_>, resp: &mut Response<B>) {
    let ran = state.filters.get(..state.ran).unwrap_or_default();
    for f in ran.iter().rev() {
        match active(f, state.overrides) {
            Some(Active::Cors(_)) => {
                if let Some((policy, origin)) = &state.cors {
                    cors::decorate_response(policy, origin, resp.headers_mut());
                }
            }
            Some(Active::HeaderMutation {
                filter,
                route,
                most_specific_wins,
            }) => {
                mutation::apply_levels(
                    filter,
                    route,
                    most_specific_wins,
                    resp.headers_mut(),
                    |m| &m.response,
                );
            }
            Some(Active::Fault(_)) | None => {}
        }
    }
}

fn abort_response(abort: Abort) -> Response<ProxyBody> {
    let (status, headers, with_body) = fault::abort_head(abort);
    let body = if with_body {
        Body::full(Bytes::from_static(fault::ABORT_BODY.as_bytes()))
    } else {
        Body::Empty
    };
    let mut r = Response::new(ProxyBody::Local(body));
    *r.status_mut() = status;
    for (k, v) in headers {
        r.headers_mut().insert(k, v);
    }
    r
}

/// A uniform number in `0..1_000_000` for percentage checks.
fn roll() -> u32 {
    rand::random::<u32>() % 1_000_000
}
