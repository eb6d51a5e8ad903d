//! How far a streamed request body has got: when it last moved and how it
//! ended. The router waits on it to start the route timeout (Envoy starts
//! it once the whole request is sent) and reads it for the stream idle
//! timeout (any body frame is activity).

use std::{
    sync::{
        Arc,
        atomic::{AtomicU8, AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{sync::Notify, time::Instant};

const STREAMING: u8 = 0;
const CLEAN: u8 = 1;
const FAILED: u8 = 2;

/// Shared between the body (which moves it) and the router (which reads it).
#[derive(Debug)]
pub struct Progress {
    start: Instant,
    /// Milliseconds after `start` of the last frame.
    last_ms: AtomicU64,
    state: AtomicU8,
    ended: Notify,
    /// Data bytes delivered (the access log's `%BYTES_RECEIVED%`).
    bytes: AtomicU64,
}

impl Progress {
    /// A fresh record, started now, for one body.
    pub fn new() -> Arc<Progress> {
        Arc::new(Progress {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            state: AtomicU8::new(STREAMING),
            ended: Notify::new(),
            bytes: AtomicU64::new(0),
        })
    }

    /// When the body last delivered a frame (or started).
    pub fn last_activity(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    /// Data bytes the body has delivered so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// When the body ended (its last frame), if it has.
    pub fn ended_at(&self) -> Option<Instant> {
        self.outcome().map(|_| self.last_activity())
    }

    pub(crate) fn count(&self, n: usize) {
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Records the end (the first call wins) and wakes [`Progress::ended`].
    pub(crate) fn finish(&self, clean: bool) {
        let to = if clean { CLEAN } else { FAILED };
        if self
            .state
            .compare_exchange(STREAMING, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.touch();
            self.ended.notify_waiters();
        }
    }

    fn outcome(&self) -> Option<bool> {
        match self.state.load(Ordering::Acquire) {
            STREAMING => None,
            s => Some(s == CLEAN),
        }
    }

    /// Resolves once the body has ended: `true` when it was read to its
    /// end, `false` when it failed or was dropped before its end.
    pub async fn ended(&self) -> bool {
        loop {
            let notified = self.ended.notified();
            tokio::pin!(notified);
            // Registered before the check, so a finish in between is seen.
            notified.as_mut().enable();
            if let Some(clean) = self.outcome() {
                return clean;
            }
            notified.await;
        }
    }
}

/// The body's handle on its [`Progress`]: a body dropped before its end
/// reports a failed end, so nobody waits for it forever.
#[derive(Debug)]
pub struct Reporter(pub(crate) Arc<Progress>);

impl Drop for Reporter {
    fn drop(&mut self) {
        self.0.finish(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ended_sees_a_finish_before_and_after_the_wait() {
        let p = Progress::new();
        p.finish(true);
        assert!(p.ended().await);

        let p = Progress::new();
        let waiter = {
            let p = Arc::clone(&p);
            tokio::spawn(async move { p.ended().await })
        };
        tokio::task::yield_now().await;
        drop(Reporter(Arc::clone(&p)));
        assert!(!waiter.await.expect("waiter"));
        // The first end wins.
        p.finish(true);
        assert!(!p.ended().await);
    }

    #[tokio::test]
    async fn touch_moves_last_activity() {
        let p = Progress::new();
        let before = p.last_activity();
        tokio::time::sleep(Duration::from_millis(5)).await;
        p.touch();
        assert!(p.last_activity() > before);
    }
}
