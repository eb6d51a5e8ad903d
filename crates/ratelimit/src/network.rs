//! `envoy.filters.network.local_ratelimit`: a token bucket of connections.
//! Each connection the filter chain accepts takes a token; one that finds
//! none is counted and closed before its terminal filter (TCP proxy, HTTP
//! connection manager) sees a byte, as Envoy closes it in
//! `onNewConnection`. The bucket is the filter config's, shared by every
//! worker; `runtime_enabled`'s default turns the filter off.

use std::sync::Arc;

use metrics::Counter;
use strait_listener::{ConnectionView, ReadDecision, ReadFilter, ReadFilterFactory};
use strait_model::{
    extension::Extension,
    ratelimit::{NetworkLocalRateLimit, type_url},
};

use crate::{
    bucket::{self, Bucket},
    stats,
};

/// The factory of `envoy.filters.network.local_ratelimit`.
#[derive(Debug, Default, Clone, Copy)]
pub struct NetworkLocalRateLimitFactory;

impl ReadFilterFactory for NetworkLocalRateLimitFactory {
    fn type_url(&self) -> &str {
        type_url::NETWORK_LOCAL
    }

    fn create(&self, config: &Extension) -> Result<Arc<dyn ReadFilter>, String> {
        let c = config
            .get::<NetworkLocalRateLimit>()
            .ok_or("network local rate limit config of the wrong type")?;
        Ok(Arc::new(NetworkLocalRateLimitFilter {
            enabled: c.enabled,
            bucket: Bucket::new(&c.token_bucket, bucket::now()),
            rate_limited: stats::network_rate_limited(&c.stat_prefix),
        }))
    }
}

struct NetworkLocalRateLimitFilter {
    enabled: bool,
    bucket: Bucket,
    rate_limited: Counter,
}

impl ReadFilter for NetworkLocalRateLimitFilter {
    fn on_connection<'a>(
        &'a self,
        _conn: &'a ConnectionView<'a>,
        _metadata: &'a mut strait_http::DynamicMetadata,
    ) -> ReadDecision<'a> {
        if !self.enabled || self.bucket.try_take(bucket::now(), 1.0) {
            return ReadDecision::Continue;
        }
        self.rate_limited.increment(1);
        ReadDecision::Close { delay: None }
    }
}
