//! The timers around one stream, as Envoy's connection manager and router
//! run them:
//! - `request_timeout`: receiving the whole request, from its start;
//! - the route `timeout`: from the end of the request to the response head;
//! - `max_stream_duration`: the whole stream, from its start (408);
//! - the stream idle timeout (route `idle_timeout`, else the connection
//!   manager's `stream_idle_timeout`): no activity on the stream in either
//!   direction for that long. Before the response head it answers 408
//!   "stream timeout"; once the response is streaming it resets the stream.

use std::{sync::Arc, time::Duration};

use strait_codec::Progress;
use tokio::time::Instant;

use crate::local_reply::LocalReply;

/// The stream idle timeout for a route: its own `idle_timeout` when set
/// (zero disables), else the connection manager's.
pub(crate) fn stream_idle(route: Option<Duration>, hcm: Option<Duration>) -> Option<Duration> {
    route.or(hcm).filter(|d| !d.is_zero())
}

/// What bounds waiting for the response head.
pub(crate) struct Deadline {
    pub(crate) started: Instant,
    pub(crate) request_timeout: Option<Duration>,
    /// The request body's progress; `None` when there is no body.
    pub(crate) body: Option<Arc<Progress>>,
    pub(crate) route_timeout: Option<Duration>,
    pub(crate) idle: Option<Duration>,
}

impl Deadline {
    /// Resolves with the reply to send when a timer fires first. The route
    /// timeout starts once the request has been sent, so a long upload is
    /// not cut short by it; an upload that stalls meets the idle timeout.
    pub(crate) async fn fired(self) -> LocalReply {
        let request_end = self.request_timeout.map(|t| self.started + t);
        let mut quiet_since = self.started;
        if let Some(body) = &self.body {
            let ended = body.ended();
            tokio::pin!(ended);
            loop {
                let idle_end = self.idle.map(|t| body.last_activity() + t);
                tokio::select! {
                    clean = &mut ended => {
                        if !clean {
                            return LocalReply::BadRequestBody;
                        }
                        quiet_since = body.last_activity();
                        break;
                    }
                    () = sleep_until(request_end) => return LocalReply::RequestTimeout,
                    () = sleep_until(idle_end) => {
                        // Fired on a stale deadline if a frame came since.
                        if self.idle.is_some_and(|t| body.last_activity().elapsed() >= t) {
                            return LocalReply::StreamIdleTimeout;
                        }
                    }
                }
            }
        }
        let route_end = self.route_timeout.map(|t| Instant::now() + t);
        let idle_end = self.idle.map(|t| quiet_since + t);
        tokio::select! {
            () = sleep_until(route_end) => LocalReply::UpstreamTimeout,
            () = sleep_until(idle_end) => LocalReply::StreamIdleTimeout,
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Bounds the whole stream by the route's `max_stream_duration` (from
/// `started`): Envoy answers 408 "downstream duration timeout" when it
/// elapses before the response.
pub(crate) async fn with_stream_limit(
    started: std::time::Instant,
    limit: Option<Duration>,
    inner: impl std::future::Future<Output = LocalReply>,
) -> LocalReply {
    match limit {
        None => inner.await,
        Some(limit) => {
            let left = limit.saturating_sub(started.elapsed());
            tokio::select! {
                reply = inner => reply,
                () = tokio::time::sleep(left) => LocalReply::StreamDurationTimeout,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::IdleTimer;

    #[test]
    fn route_idle_timeout_overrides_and_zero_disables() {
        let s = Duration::from_secs;
        assert_eq!(stream_idle(None, Some(s(300))), Some(s(300)));
        assert_eq!(stream_idle(Some(s(2)), Some(s(300))), Some(s(2)));
        assert_eq!(stream_idle(Some(s(0)), Some(s(300))), None);
        assert_eq!(stream_idle(None, None), None);
        assert_eq!(stream_idle(Some(s(2)), None), Some(s(2)));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_before_the_response_head_is_408_unless_the_route_timeout_is_first() {
        let d = |route, idle| Deadline {
            started: Instant::now(),
            request_timeout: None,
            body: None,
            route_timeout: route,
            idle,
        };
        let s = Duration::from_secs;
        assert!(matches!(
            d(Some(s(15)), Some(s(5))).fired().await,
            LocalReply::StreamIdleTimeout
        ));
        assert!(matches!(
            d(Some(s(1)), Some(s(5))).fired().await,
            LocalReply::UpstreamTimeout
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_timer_waits_for_quiet() {
        let mut t = IdleTimer::new(Duration::from_secs(2), None);
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(1)).await;
        t.touch();
        std::future::poll_fn(|cx| t.poll_expired(cx)).await;
        assert!(started.elapsed() >= Duration::from_secs(3));
    }
}
