//! The built-in HTTP filters as chain members: `envoy.filters.http.fault`,
//! `envoy.filters.http.cors` and `envoy.filters.http.header_mutation`. The
//! decisions are `strait-filter`'s (pure: this module supplies the clock,
//! the randomness and the request); their configs are the model's, made by
//! the front end. They are registered like any other filter.

use std::sync::{Arc, atomic::Ordering};

use http::{HeaderValue, StatusCode};
use strait_filter::{
    cors::{self, CorsDecision},
    fault::{self, Abort},
    mutation,
};
use strait_model::{
    extension::Extension,
    filter::{
        CorsFilter, CorsPolicy, FaultConfig, HeaderMutationConfig, HeaderMutationFilter,
        RouterConfig, type_url,
    },
};

use crate::{
    chain::{Decision, HttpFilter, HttpFilterFactory, RequestHead, ResponseHead},
    local_reply::Reply,
    stats::HttpStats,
};

/// The factories of the built-in filters.
pub(crate) fn factories() -> Vec<Arc<dyn HttpFilterFactory>> {
    vec![
        Arc::new(Builtin(type_url::FAULT, Some(type_url::FAULT))),
        Arc::new(Builtin(type_url::CORS, Some(type_url::CORS_POLICY))),
        Arc::new(Builtin(
            type_url::HEADER_MUTATION,
            Some(type_url::HEADER_MUTATION_PER_ROUTE),
        )),
        Arc::new(Builtin(type_url::ROUTER, None)),
    ]
}

/// A built-in filter's factory: its config and per-route type URLs.
struct Builtin(&'static str, Option<&'static str>);

impl HttpFilterFactory for Builtin {
    fn type_url(&self) -> &str {
        self.0
    }

    fn per_route_type_url(&self) -> Option<&str> {
        self.1
    }

    fn create(&self, config: &Extension) -> Result<Arc<dyn HttpFilter>, String> {
        let wrong = || format!("{} config of the wrong type", self.0);
        Ok(match self.0 {
            type_url::FAULT => Arc::new(Fault(
                config.get::<FaultConfig>().ok_or_else(wrong)?.clone(),
            )),
            type_url::CORS => {
                config.get::<CorsFilter>().ok_or_else(wrong)?;
                Arc::new(Cors)
            }
            type_url::ROUTER => {
                config.get::<RouterConfig>().ok_or_else(wrong)?;
                // The chain forwards through the router itself (it is the
                // terminal); this value only stands in the registry.
                Arc::new(Router)
            }
            _ => Arc::new(HeaderMutation(
                config
                    .get::<HeaderMutationFilter>()
                    .ok_or_else(wrong)?
                    .clone(),
            )),
        })
    }
}

/// `envoy.filters.http.router`: forwarding is the request path's own
/// (`forward`), run when the chain reaches its terminal and the router
/// registered is this built-in one.
struct Router;

impl HttpFilter for Router {
    fn on_request<'a>(&'a self, _: &'a mut RequestHead<'_>) -> Decision<'a> {
        Decision::Continue
    }
}

/// A uniform number in `0..1_000_000` for percentage checks.
fn roll() -> u32 {
    rand::random::<u32>() % 1_000_000
}

/// `envoy.filters.http.fault`. A per-route config replaces the filter's
/// wholesale, as in Envoy.
struct Fault(FaultConfig);

/// Decrements the active-fault gauge when the fault is over.
struct FaultGuard(Arc<HttpStats>);

impl Drop for FaultGuard {
    fn drop(&mut self) {
        self.0.active_faults.fetch_sub(1, Ordering::AcqRel);
    }
}

impl HttpFilter for Fault {
    fn on_request<'a>(&'a self, req: &'a mut RequestHead<'_>) -> Decision<'a> {
        let cfg = req.route_config::<FaultConfig>().unwrap_or(&self.0);
        let stats = req.info.stats;
        let now = stats.active_faults.load(Ordering::Acquire);
        let plan = fault::plan(cfg, &req.head.headers, req.info.cluster, now, roll);
        if plan.is_empty() {
            return Decision::Continue;
        }
        stats.active_faults.fetch_add(1, Ordering::AcqRel);
        let guard = FaultGuard(Arc::clone(stats));
        let Some(delay) = plan.delay else {
            return aborted(&guard.0, plan.abort);
        };
        Decision::Pause(Box::pin(async move {
            guard.0.fault_delays.increment(1);
            tracing::debug!(response_flags = "DI", ?delay, "fault delay");
            tokio::time::sleep(delay).await;
            aborted(&guard.0, plan.abort)
        }))
    }
}

fn aborted<'a>(stats: &HttpStats, abort: Option<Abort>) -> Decision<'a> {
    let Some(abort) = abort else {
        return Decision::Continue;
    };
    stats.fault_aborts.increment(1);
    let (status, headers, with_body) = fault::abort_head(abort);
    let mut reply = Reply::new(status).flag("FI").details("fault_filter_abort");
    for (k, v) in headers {
        reply = reply.header(k, v);
    }
    if with_body {
        reply = reply.body(fault::ABORT_BODY);
    }
    Decision::Respond(reply)
}

/// `envoy.filters.http.cors`: the policy is the route's (or its virtual
/// host's, or the deprecated `cors` field's).
struct Cors;

/// The origin of an allowed cross-origin request, for the response (the
/// policy is looked up again there rather than copied).
#[derive(Clone)]
struct CorsOrigin(HeaderValue);

impl HttpFilter for Cors {
    fn on_request<'a>(&'a self, req: &'a mut RequestHead<'_>) -> Decision<'a> {
        // The deprecated `cors` fields apply to any CORS filter.
        let Some(policy) = req
            .route_config::<CorsPolicy>()
            .or_else(|| req.route_config_named::<CorsPolicy>(""))
        else {
            return Decision::Continue;
        };
        let enabled = policy.enabled.hits(roll());
        match cors::decide(policy, &req.head.method, &req.head.headers, enabled) {
            CorsDecision::Pass => Decision::Continue,
            CorsDecision::Actual(origin) => {
                req.state.insert(CorsOrigin(origin));
                Decision::Continue
            }
            CorsDecision::Preflight(headers) => Decision::Respond(
                Reply::new(StatusCode::OK)
                    .headers(headers)
                    .details("cors_response"),
            ),
        }
    }

    fn on_response(&self, resp: &mut ResponseHead<'_>) {
        let policy = resp
            .route_config::<CorsPolicy>()
            .or_else(|| resp.route_config_named::<CorsPolicy>(""));
        if let (Some(policy), Some(CorsOrigin(origin))) = (policy, resp.state.get::<CorsOrigin>()) {
            cors::decorate_response(policy, origin, resp.headers);
        }
    }
}

/// `envoy.filters.http.header_mutation`: the filter's mutations, then every
/// level's per-route mutations (most specific first, or last with
/// `most_specific_header_mutations_wins`).
struct HeaderMutation(HeaderMutationFilter);

impl HttpFilter for HeaderMutation {
    fn on_request<'a>(&'a self, req: &'a mut RequestHead<'_>) -> Decision<'a> {
        let levels = req.route_configs::<HeaderMutationConfig>();
        let headers = &mut req.head.headers;
        mutation::apply_levels(
            &self.0.mutations,
            levels,
            self.0.most_specific_wins,
            headers,
            |m| &m.request,
        );
        Decision::Continue
    }

    fn on_response(&self, resp: &mut ResponseHead<'_>) {
        let levels = resp.route_configs::<HeaderMutationConfig>();
        mutation::apply_levels(
            &self.0.mutations,
            levels,
            self.0.most_specific_wins,
            resp.headers,
            |m| &m.response,
        );
    }
}
