//! `envoy.filters.http.local_ratelimit`: token buckets in the proxy.
//!
//! As Envoy 1.40: the route's per-filter config (the same message)
//! replaces the filter's wholesale; a config without `filter_enabled` does
//! nothing; an enabled request takes tokens ([`crate::limiter`]) and is
//! counted `ok` or `rate_limited`; a limited one is answered (status,
//! `local_rate_limited`, `response_headers_to_add`, flag `RL`) when
//! `filter_enforced` says so, else goes on with
//! `request_headers_to_add_when_not_enforced`. With
//! `enable_x_ratelimit_headers` every answer that took tokens carries the
//! deciding bucket's `x-ratelimit-*`.
//!
//! The buckets belong to the config object, as in Envoy: the filter's own
//! are made with the filter, a per-route config's on its first request
//! (kept in the config's [`LimiterSlot`]), so they are shared by every
//! worker and live as long as the config. A new config (any change) is a
//! new object with full buckets; an unchanged listener keeps its objects
//! and so its buckets. With `local_rate_limit_per_downstream_connection`
//! each connection gets its own buckets.
//!
//! [`LimiterSlot`]: strait_model::ratelimit::LimiterSlot

use std::sync::{Arc, PoisonError};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use strait_http::{
    Decision, FilterScope, HttpFilter, HttpFilterFactory, Reply, RequestHead, RequestInfo,
    ResponseHead,
};
use strait_model::{
    HeaderMutations,
    extension::Extension,
    policy::Fraction,
    ratelimit::{LimiterSlot, LocalRateLimit, XRateLimitHeaders, type_url},
};
use strait_route::HeaderMutation;

use crate::{
    bucket::{self, Bucket},
    descriptor::{self, Facts, Selection},
    limiter::Limiter,
    stats::LocalStats,
};

static LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
static REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
static RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// The factory of `envoy.filters.http.local_ratelimit`.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalRateLimitFactory;

impl HttpFilterFactory for LocalRateLimitFactory {
    fn type_url(&self) -> &str {
        type_url::HTTP_LOCAL
    }

    fn per_route_type_url(&self) -> Option<&str> {
        Some(type_url::HTTP_LOCAL)
    }

    fn create(&self, config: &Extension) -> Result<Arc<dyn HttpFilter>, String> {
        self.create_in(config, &FilterScope::default())
    }

    fn create_in(
        &self,
        config: &Extension,
        _scope: &FilterScope<'_>,
    ) -> Result<Arc<dyn HttpFilter>, String> {
        let c = config
            .get::<LocalRateLimit>()
            .ok_or("local rate limit config of the wrong type")?;
        // Made here, under the proxy's stats recorder, and kept in the
        // config's slot with the buckets. A config object built into a
        // chain before (a listener rebuilt around the same config) keeps
        // what it has.
        let mut why = None;
        let made = c
            .limiter
            .get_or_init(|| Compiled::new(c).map_err(|e| why = Some(e)).ok());
        if !matches!(made, Some(Some(_))) {
            return Err(why.unwrap_or_else(|| "local rate limit config not compiled".to_owned()));
        }
        Ok(Arc::new(LocalRateLimitFilter {
            config: config.clone(),
        }))
    }
}

/// What one config object keeps: its buckets, counters and header changes.
struct Compiled {
    limiter: Limiter,
    stats: LocalStats,
    response_headers: HeaderMutation,
    request_headers: HeaderMutation,
}

impl Compiled {
    fn new(c: &LocalRateLimit) -> Result<Self, String> {
        let mutation = |m: HeaderMutations| {
            HeaderMutation::compile(&m, &|| format!("local rate limit {}", c.stat_prefix))
                .map_err(|e| e.to_string())
        };
        Ok(Compiled {
            limiter: Limiter::new(c, bucket::now()),
            stats: LocalStats::new(&c.stat_prefix),
            response_headers: mutation(HeaderMutations {
                response_add: c.response_headers_to_add.clone(),
                ..Default::default()
            })?,
            request_headers: mutation(HeaderMutations {
                request_add: c.request_headers_to_add_when_not_enforced.clone(),
                ..Default::default()
            })?,
        })
    }
}

struct LocalRateLimitFilter {
    /// Keeps the config object (and so its buckets) alive.
    config: Extension,
}

/// The bucket an answer's `x-ratelimit-*` headers describe, read when the
/// response passes (as Envoy reads it in `encodeHeaders`).
#[derive(Clone)]
struct XHeaders(Arc<Bucket>);

/// A connection's own limiters (`local_rate_limit_per_downstream_
/// connection`), by config object.
#[derive(Clone, Default)]
struct ConnectionLimiters(Vec<(LimiterSlot, Arc<Limiter>)>);

fn hits(f: Fraction) -> bool {
    f.per_million >= 1_000_000
        || (strait_codec::headers::random_u64() % 1_000_000) < u64::from(f.per_million)
}

fn add_x_headers(headers: &mut HeaderMap, bucket: &Bucket, now: f64) {
    for (name, value) in [
        (&LIMIT, bucket.max_tokens()),
        (&REMAINING, bucket.remaining(now)),
        (&RESET, bucket.reset(now)),
    ] {
        headers.append(name.clone(), HeaderValue::from(value));
    }
}

/// The limiter of `config` for this request's connection, made on the
/// connection's first request under this config. Takes the connection's
/// own lock, which only its requests contend for.
fn connection_limiter(info: &RequestInfo<'_>, config: &LocalRateLimit) -> Arc<Limiter> {
    let mut state = info
        .connection_state()
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if state.get::<ConnectionLimiters>().is_none() {
        state.insert(ConnectionLimiters::default());
    }
    let Some(ConnectionLimiters(list)) = state.get_mut::<ConnectionLimiters>() else {
        return Arc::new(Limiter::new(config, bucket::now()));
    };
    if let Some((_, l)) = list.iter().find(|(slot, _)| slot.same(&config.limiter)) {
        return Arc::clone(l);
    }
    let l = Arc::new(Limiter::new(config, bucket::now()));
    list.push((config.limiter.clone(), Arc::clone(&l)));
    l
}

impl LocalRateLimitFilter {
    /// The config in force for this request and its compiled state.
    fn used<'r>(&'r self, req: &RequestHead<'r>) -> Option<(&'r LocalRateLimit, &'r Compiled)> {
        match req.route_config::<LocalRateLimit>() {
            Some(c) => {
                // A per-route config's first request makes its state,
                // registering its counters with the proxy's recorder.
                let upstreams = req.info.upstreams;
                let compiled = c
                    .limiter
                    .get_or_init(|| upstreams.register(|| Compiled::new(c)).ok());
                compiled.and_then(Option::as_ref).map(|s| (c, s))
            }
            None => {
                let c = self.config.get::<LocalRateLimit>()?;
                c.limiter
                    .get_or_init(|| None::<Compiled>)
                    .and_then(Option::as_ref)
                    .map(|s| (c, s))
            }
        }
    }
}

impl HttpFilter for LocalRateLimitFilter {
    fn on_request<'a>(&'a self, req: &'a mut RequestHead<'_>) -> Decision<'a> {
        let Some((config, compiled)) = self.used(req) else {
            return Decision::Continue;
        };
        match config.filter_enabled {
            Some(f) if hits(f) => {}
            _ => return Decision::Continue,
        }
        let stats = &compiled.stats;
        stats.enabled.increment(1);
        // Envoy reads the route's policies only for a config with
        // descriptors: without any, nothing could match them.
        let descriptors = if config.descriptors.is_empty() {
            Vec::new()
        } else {
            let facts = Facts {
                headers: &req.head.headers,
                remote: req.info.remote,
                cluster: req.info.cluster,
            };
            let select = Selection {
                stage: config.stage,
                vh_rate_limits: config.vh_rate_limits,
                skip_disable_keys: true,
            };
            descriptor::for_route(req.info.rate_limits, select, &facts)
        };
        let now = bucket::now();
        let per_connection;
        let limiter = if config.per_connection {
            per_connection = connection_limiter(req.info, config);
            &*per_connection
        } else {
            &compiled.limiter
        };
        let verdict = limiter.check(&descriptors, now);
        drop(descriptors);
        let x_bucket = verdict
            .bucket
            .filter(|_| config.x_ratelimit_headers == XRateLimitHeaders::Draft03);
        if verdict.allowed {
            stats.ok.increment(1);
        } else {
            stats.rate_limited.increment(1);
            if config.filter_enforced.is_some_and(hits) {
                stats.enforced.increment(1);
                let mut headers = HeaderMap::new();
                compiled.response_headers.apply_response(&mut headers);
                if let Some(b) = x_bucket {
                    add_x_headers(&mut headers, b, bucket::now());
                }
                let status =
                    StatusCode::from_u16(config.status).unwrap_or(StatusCode::TOO_MANY_REQUESTS);
                return Decision::Respond(
                    Reply::new(status)
                        .body(Bytes::from_static(b"local_rate_limited"))
                        .headers(headers)
                        .flag("RL")
                        .details("local_rate_limited"),
                );
            }
            compiled
                .request_headers
                .apply_request(&mut req.head.headers);
        }
        if let Some(b) = x_bucket {
            req.state.insert(XHeaders(Arc::clone(b)));
        }
        Decision::Continue
    }

    fn on_response(&self, resp: &mut ResponseHead<'_>) {
        if let Some(XHeaders(b)) = resp.state.get::<XHeaders>() {
            add_x_headers(resp.headers, b, bucket::now());
        }
    }
}
