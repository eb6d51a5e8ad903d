//! One local rate limit config's buckets and the decision over them, as
//! Envoy 1.40's `LocalRateLimiterImpl::requestAllowed` makes it: the
//! request's descriptors that match a configured descriptor take a token
//! from that descriptor's bucket, slowest-filling first, and the first
//! that has none denies; then the default bucket is taken from too (when
//! nothing matched, or `always_consume_default_token_bucket`). The bucket
//! that decided (or, when allowed, the first matched one, else the
//! default) is what the `x-ratelimit-*` headers describe.

use std::sync::Arc;

use strait_model::ratelimit::LocalRateLimit;

use crate::{bucket::Bucket, descriptor::Descriptor};

/// A configured descriptor's entries and its bucket.
type DescriptorBucket = (Box<[(String, String)]>, Arc<Bucket>);

/// The buckets of one config (or one connection, with
/// `local_rate_limit_per_downstream_connection`).
#[derive(Debug)]
pub struct Limiter {
    default: Option<Arc<Bucket>>,
    descriptors: Box<[DescriptorBucket]>,
    always_consume_default: bool,
}

/// A request's outcome.
#[derive(Debug)]
pub struct Verdict<'l> {
    pub allowed: bool,
    /// The bucket the `x-ratelimit-*` headers describe, if any.
    pub bucket: Option<&'l Arc<Bucket>>,
}

impl Limiter {
    /// Full buckets for `config`, at `now`.
    pub fn new(config: &LocalRateLimit, now: f64) -> Self {
        Limiter {
            default: config
                .token_bucket
                .as_ref()
                .map(|b| Arc::new(Bucket::new(b, now))),
            descriptors: config
                .descriptors
                .iter()
                .map(|d| {
                    (
                        d.entries.clone().into_boxed_slice(),
                        Arc::new(Bucket::new(&d.token_bucket, now)),
                    )
                })
                .collect(),
            always_consume_default: config.always_consume_default_token_bucket,
        }
    }

    /// Decides a request with descriptors `request` at `now`. Allocates
    /// only when a descriptor matches.
    pub fn check(&self, request: &[Descriptor<'_>], now: f64) -> Verdict<'_> {
        let find = |d: &Descriptor<'_>| {
            self.descriptors
                .iter()
                .find(|(entries, _)| d.is(entries))
                .map(|(_, b)| b)
        };
        let mut matched: Vec<&Arc<Bucket>> = Vec::new();
        for d in request {
            if let Some(b) = find(d) {
                matched.push(b);
            }
        }
        // Stable: equal rates keep the request's order, as std::sort of
        // Envoy's few elements in practice does.
        matched.sort_by(|a, b| a.fill_rate().total_cmp(&b.fill_rate()));
        for b in &matched {
            if !b.try_take(now, 1.0) {
                return Verdict {
                    allowed: false,
                    bucket: Some(b),
                };
            }
        }
        let first = matched.first().copied();
        if !matched.is_empty() && !self.always_consume_default {
            return Verdict {
                allowed: true,
                bucket: first,
            };
        }
        match &self.default {
            None => Verdict {
                allowed: true,
                bucket: first,
            },
            Some(d) if !d.try_take(now, 1.0) => Verdict {
                allowed: false,
                bucket: Some(d),
            },
            Some(d) => Verdict {
                allowed: true,
                bucket: first.or(Some(d)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{borrow::Cow, time::Duration};

    use strait_model::ratelimit::{
        LimiterSlot, LocalDescriptor, TokenBucket, VhRateLimits, XRateLimitHeaders,
    };

    use super::*;

    fn bucket(max_tokens: u32, secs: u64) -> TokenBucket {
        TokenBucket {
            max_tokens,
            tokens_per_fill: 1,
            fill_interval: Duration::from_secs(secs),
        }
    }

    fn config(default: Option<TokenBucket>, always: bool) -> LocalRateLimit {
        LocalRateLimit {
            stat_prefix: "t".to_owned(),
            status: 429,
            token_bucket: default,
            filter_enabled: None,
            filter_enforced: None,
            request_headers_to_add_when_not_enforced: Vec::new(),
            response_headers_to_add: Vec::new(),
            descriptors: vec![
                LocalDescriptor {
                    entries: vec![("user".to_owned(), "alice".to_owned())],
                    token_bucket: bucket(2, 60),
                },
                LocalDescriptor {
                    entries: vec![("tier".to_owned(), "gold".to_owned())],
                    token_bucket: bucket(5, 1),
                },
            ],
            stage: 0,
            per_connection: false,
            x_ratelimit_headers: XRateLimitHeaders::Off,
            vh_rate_limits: VhRateLimits::Override,
            always_consume_default_token_bucket: always,
            limiter: LimiterSlot::default(),
        }
    }

    fn desc(k: &'static str, v: &'static str) -> Descriptor<'static> {
        Descriptor {
            entries: vec![(k, Cow::Borrowed(v))],
        }
    }

    #[test]
    fn default_bucket_alone() {
        let l = Limiter::new(&config(Some(bucket(2, 3600)), true), 0.0);
        assert!(l.check(&[], 0.0).allowed);
        assert!(l.check(&[desc("user", "bob")], 0.0).allowed);
        let v = l.check(&[], 0.0);
        assert!(!v.allowed);
        assert_eq!(v.bucket.map(|b| b.max_tokens()), Some(2));
    }

    #[test]
    fn descriptor_tokens_are_taken_even_when_the_default_denies() {
        // As Envoy: alice's bucket pays, then the (empty) default denies.
        let l = Limiter::new(&config(Some(bucket(1, 3600)), true), 0.0);
        assert!(l.check(&[], 0.0).allowed);
        let alice = [desc("user", "alice")];
        let v = l.check(&alice, 0.0);
        assert!(!v.allowed);
        assert_eq!(v.bucket.map(|b| b.max_tokens()), Some(1));
        assert!(!l.check(&alice, 0.0).allowed);
        // Alice's two tokens are gone: now her bucket denies.
        let v = l.check(&alice, 0.0);
        assert_eq!(v.bucket.map(|b| b.max_tokens()), Some(2));
    }

    #[test]
    fn slowest_descriptor_first_and_reported_when_allowed() {
        let l = Limiter::new(&config(None, false), 0.0);
        let both = [desc("tier", "gold"), desc("user", "alice")];
        let v = l.check(&both, 0.0);
        assert!(v.allowed);
        // alice fills at 1/60 per second, gold at 1 per second.
        assert_eq!(v.bucket.map(|b| b.max_tokens()), Some(2));
        assert!(l.check(&both, 0.0).allowed);
        assert!(!l.check(&both, 0.0).allowed);
        // Without a default bucket, an unmatched request is allowed.
        let v = l.check(&[desc("user", "carol")], 0.0);
        assert!(v.allowed && v.bucket.is_none());
    }
}
