//! The token bucket Envoy 1.40's local rate limits use
//! (`AtomicTokenBucketImpl`): tokens refill continuously at
//! `tokens_per_fill / fill_interval` per second up to `max_tokens`, and the
//! bucket starts full. Its whole state is one number, the moment the
//! bucket was (or would have been) empty: the tokens at `now` are
//! `min(max, (now - empty_at) * rate)`, and taking `n` tokens moves that
//! moment forward. So the bucket is one atomic word updated by
//! compare-and-swap, shared by every worker without a lock, and the refill
//! is computed when a request looks, never by a timer.
//!
//! The arithmetic ([`take`], [`tokens`], [`reset_seconds`]) is pure, with
//! the clock passed in, so it is tested without waiting.

use std::{
    sync::{
        OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use strait_model::ratelimit::TokenBucket as Config;

/// Envoy's floor on the fill rate: one token a year.
const MIN_FILL_RATE: f64 = 1.0 / (365.0 * 24.0 * 60.0 * 60.0);

/// Seconds on the process's monotonic clock (from its first reading).
pub fn now() -> f64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    ORIGIN.get_or_init(Instant::now).elapsed().as_secs_f64()
}

/// One bucket, shared by every request (and worker) that uses it.
#[derive(Debug)]
pub struct Bucket {
    max_tokens: f64,
    /// Tokens per second.
    rate: f64,
    /// `f64` bits of the moment the bucket was empty, in [`now`]'s seconds.
    empty_at: AtomicU64,
}

impl Bucket {
    /// A full bucket as `config` describes it, at `now`.
    pub fn new(config: &Config, now: f64) -> Self {
        let max_tokens = f64::from(config.max_tokens);
        let rate = (f64::from(config.tokens_per_fill) / config.fill_interval.as_secs_f64())
            .max(MIN_FILL_RATE);
        Bucket {
            max_tokens,
            rate,
            empty_at: AtomicU64::new((now - max_tokens / rate).to_bits()),
        }
    }

    /// Takes `n` tokens at `now` if the bucket has them. Lock-free: a
    /// compare-and-swap loop that retries only when another thread took
    /// tokens at the same moment.
    pub fn try_take(&self, now: f64, n: f64) -> bool {
        let mut old = self.empty_at.load(Ordering::Relaxed);
        loop {
            let Some(new) = take(f64::from_bits(old), now, self.max_tokens, self.rate, n) else {
                return false;
            };
            match self.empty_at.compare_exchange_weak(
                old,
                new.to_bits(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(current) => old = current,
            }
        }
    }

    /// The tokens in the bucket at `now` (a fraction while refilling).
    pub fn tokens(&self, now: f64) -> f64 {
        tokens(
            f64::from_bits(self.empty_at.load(Ordering::Relaxed)),
            now,
            self.max_tokens,
            self.rate,
        )
    }

    /// `x-ratelimit-limit`.
    pub fn max_tokens(&self) -> u64 {
        self.max_tokens as u64
    }

    /// `x-ratelimit-remaining`: whole tokens left.
    pub fn remaining(&self, now: f64) -> u64 {
        self.tokens(now).floor() as u64
    }

    /// `x-ratelimit-reset`: see [`reset_seconds`].
    pub fn reset(&self, now: f64) -> u64 {
        reset_seconds(self.tokens(now), self.rate)
    }

    /// Tokens per second: matched descriptors are tried slowest first.
    pub fn fill_rate(&self) -> f64 {
        self.rate
    }
}

/// The tokens at `now` of a bucket empty at `empty_at`.
pub fn tokens(empty_at: f64, now: f64, max_tokens: f64, rate: f64) -> f64 {
    if now <= empty_at {
        return 0.0;
    }
    ((now - empty_at) * rate).min(max_tokens)
}

/// The new empty moment after taking `n` tokens at `now`, or `None` when
/// there are fewer than `n`. Taking from a full bucket first drops what
/// overflowed (the moment jumps to `now - max/rate`), as Envoy's does.
pub fn take(empty_at: f64, now: f64, max_tokens: f64, rate: f64, n: f64) -> Option<f64> {
    let have = tokens(empty_at, now, max_tokens, rate);
    if have < n {
        return None;
    }
    Some(now - (have - n) / rate)
}

/// Whole seconds until the next token: 0 while one is there, else the
/// time to refill to one, in milliseconds rounded up, then seconds rounded
/// up (Envoy 1.40 answers 3600 right after a 1-per-hour bucket empties,
/// and 3597 three seconds later).
pub fn reset_seconds(tokens: f64, rate: f64) -> u64 {
    if tokens >= 1.0 {
        return 0;
    }
    let ms = ((1.0 - tokens) / rate * 1000.0).ceil();
    (ms / 1000.0).ceil() as u64
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn config(max_tokens: u32, tokens_per_fill: u32, fill: Duration) -> Config {
        Config {
            max_tokens,
            tokens_per_fill,
            fill_interval: fill,
        }
    }

    #[test]
    fn starts_full_then_empties() {
        let b = Bucket::new(&config(3, 1, Duration::from_secs(3600)), 100.0);
        assert_eq!(b.remaining(100.0), 3);
        for left in [2, 1, 0] {
            assert!(b.try_take(100.0, 1.0));
            assert_eq!(b.remaining(100.0), left);
        }
        assert!(!b.try_take(100.0, 1.0));
        assert_eq!(b.max_tokens(), 3);
    }

    #[test]
    fn refills_continuously_up_to_max() {
        // 2 tokens per second.
        let b = Bucket::new(&config(4, 1, Duration::from_millis(500)), 0.0);
        for _ in 0..4 {
            assert!(b.try_take(0.0, 1.0));
        }
        assert!(!b.try_take(0.25, 1.0));
        assert!(b.try_take(0.5, 1.0));
        assert!(!b.try_take(0.5, 1.0));
        // A long pause refills to max, no further.
        assert_eq!(b.remaining(1000.0), 4);
    }

    #[test]
    fn overflow_is_dropped_before_taking() {
        let (max, rate) = (2.0, 1.0);
        // Empty long ago: full. Taking one leaves one, not "infinite - 1".
        let after = take(-1000.0, 0.0, max, rate, 1.0).expect("full");
        assert_eq!(tokens(after, 0.0, max, rate), 1.0);
    }

    #[test]
    fn reset_is_whole_seconds_to_the_next_token() {
        let rate = 1.0 / 3600.0;
        assert_eq!(reset_seconds(1.0, rate), 0);
        assert_eq!(reset_seconds(2.5, rate), 0);
        // Just emptied: a whole interval (rounded up).
        assert_eq!(reset_seconds(0.000_001, rate), 3600);
        // Three seconds of refill later.
        assert_eq!(reset_seconds(3.5 * rate, rate), 3597);
        // 60-second descriptor bucket.
        assert_eq!(reset_seconds(0.0, 1.0 / 60.0), 60);
    }

    #[test]
    fn concurrent_takers_never_overdraw() {
        let b = std::sync::Arc::new(Bucket::new(
            &config(1000, 1, Duration::from_secs(3600)),
            0.0,
        ));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let b = std::sync::Arc::clone(&b);
                std::thread::spawn(move || (0..400).filter(|_| b.try_take(0.0, 1.0)).count())
            })
            .collect();
        let taken: usize = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
        assert_eq!(taken, 1000);
    }
}
