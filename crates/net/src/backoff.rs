//! How long to wait before reconnecting to a control-plane service (the xDS
//! server, an SDS server, the metrics service) after `failures` attempts
//! in a row failed.

use std::time::Duration;

/// First wait; doubled per failed attempt up to [`MAX_BACKOFF`]. Short, so
/// a restarted server is found quickly.
pub const BASE_BACKOFF: Duration = Duration::from_millis(100);
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Full jitter over an exponential ceiling: a random wait in [ceiling/2,
/// ceiling], which spreads a fleet's reconnects.
pub fn reconnect_backoff(failures: u32) -> Duration {
    let ceiling = BASE_BACKOFF
        .saturating_mul(1u32 << failures.min(16))
        .min(MAX_BACKOFF);
    let ms = u64::try_from(ceiling.as_millis())
        .unwrap_or(u64::MAX)
        .max(2);
    Duration::from_millis(rand::random_range(ms / 2..=ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        for failures in 0..40 {
            let ceiling = BASE_BACKOFF
                .saturating_mul(1u32 << failures.min(16))
                .min(MAX_BACKOFF);
            let b = reconnect_backoff(failures);
            assert!(b <= ceiling && b >= ceiling / 2, "{failures}: {b:?}");
        }
    }
}
