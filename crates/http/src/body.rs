//! The response body the HTTP path hands to the server connection: local
//! or streamed from upstream, kept counted as an open stream until done.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use strait_codec::{Body, FrameHook};
use strait_upstream::PooledBody;

use strait_codec::Progress;
use tokio::time::{Instant, Sleep};

use crate::{access_log::Pending, conn::StreamGuard, trace::InFlight};

/// A response body that keeps its stream counted until it is finished, and
/// writes the request's access-log entry when it goes (sent to the end, or
/// dropped by a reset).
#[derive(Debug)]
pub struct Tracked {
    body: ProxyBody,
    _stream: StreamGuard,
    log: Option<Box<Pending>>,
    span: Option<Box<InFlight>>,
}

impl Tracked {
    pub(crate) fn new(
        body: ProxyBody,
        stream: StreamGuard,
        log: Option<Box<Pending>>,
        span: Option<Box<InFlight>>,
    ) -> Self {
        Tracked {
            body,
            _stream: stream,
            log,
            span,
        }
    }
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        if let Some(log) = this.log.as_deref_mut() {
            match &polled {
                Poll::Ready(Some(Ok(f))) => {
                    log.frame(f);
                    if this.body.is_end_stream() {
                        log.ended();
                    }
                }
                Poll::Ready(_) => log.ended(),
                Poll::Pending => {}
            }
        }
        if let (Some(span), Poll::Ready(Some(Ok(f)))) = (this.span.as_deref_mut(), &polled) {
            span.frame(f);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The response body: local, or streamed from upstream (under the stream
/// idle timer, when there is one), or either passed through the HTTP
/// filters' body steps (only for a chain that has such filters).
pub enum ProxyBody {
    Local(Body),
    Upstream(PooledBody, Option<IdleTimer>),
    Filtered(Box<ProxyBody>, Box<dyn FrameHook>),
    /// Watched, not changed: a hook that only reads the frames (the
    /// filters' end-of-stream record), so the size passes through.
    Observed(Box<ProxyBody>, Box<dyn FrameHook>),
}

impl std::fmt::Debug for ProxyBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProxyBody::Local(b) => f.debug_tuple("Local").field(b).finish(),
            ProxyBody::Upstream(b, idle) => f.debug_tuple("Upstream").field(b).field(idle).finish(),
            ProxyBody::Filtered(b, _) => f.debug_tuple("Filtered").field(b).finish(),
            ProxyBody::Observed(b, _) => f.debug_tuple("Observed").field(b).finish(),
        }
    }
}

impl ProxyBody {
    /// Whether the body streams from an upstream (filtered or not).
    pub fn is_upstream(&self) -> bool {
        match self {
            ProxyBody::Local(_) => false,
            ProxyBody::Upstream(..) => true,
            ProxyBody::Filtered(inner, _) | ProxyBody::Observed(inner, _) => inner.is_upstream(),
        }
    }
}

/// A response body's error: the upstream's, or the idle timer's reset.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

impl http_body::Body for ProxyBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let polled = match self.get_mut() {
            ProxyBody::Local(b) => Pin::new(b).poll_frame(cx),
            ProxyBody::Upstream(b, None) => Pin::new(b).poll_frame(cx),
            ProxyBody::Filtered(b, hook) | ProxyBody::Observed(b, hook) => {
                let mut res = Pin::new(&mut **b).poll_frame(cx);
                if let Poll::Ready(Some(Ok(f))) = &mut res {
                    hook.frame(f);
                }
                return res;
            }
            ProxyBody::Upstream(b, Some(idle)) => match Pin::new(b).poll_frame(cx) {
                Poll::Pending => {
                    if idle.poll_expired(cx).is_ready() {
                        // Envoy resets a stream that went idle mid-response.
                        return Poll::Ready(Some(Err(Box::new(StreamIdle))));
                    }
                    Poll::Pending
                }
                ready => {
                    idle.touch();
                    ready
                }
            },
        };
        polled.map(|f| f.map(|r| r.map_err(|e| Box::new(e) as BodyError)))
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Local(b) => b.is_end_stream(),
            ProxyBody::Upstream(b, _) => b.is_end_stream(),
            ProxyBody::Filtered(b, _) | ProxyBody::Observed(b, _) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Local(b) => b.size_hint(),
            ProxyBody::Upstream(b, _) => b.size_hint(),
            // A body step may change the size: the head's `content-length`,
            // if any, frames it.
            ProxyBody::Filtered(..) => SizeHint::default(),
            ProxyBody::Observed(b, _) => b.size_hint(),
        }
    }
}

/// The stream idle timer while the response body streams: reset by every
/// response frame and by request frames (a bidirectional stream is active
/// while either side moves). The timer is only allocated when the body
/// actually has to wait.
#[derive(Debug)]
pub struct IdleTimer {
    limit: Duration,
    request: Option<Arc<Progress>>,
    last: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
}

/// The error that resets a stream whose idle timer fired.
#[derive(Debug, thiserror::Error)]
#[error("stream idle timeout")]
pub(crate) struct StreamIdle;

impl IdleTimer {
    pub(crate) fn new(limit: Duration, request: Option<Arc<Progress>>) -> Self {
        IdleTimer {
            limit,
            request,
            last: Instant::now(),
            sleep: None,
        }
    }

    /// A response frame went by.
    pub(crate) fn touch(&mut self) {
        self.last = Instant::now();
    }

    /// Called when the body is pending: `Ready` once the stream has been
    /// quiet for the limit.
    pub(crate) fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            let mut last = self.last;
            if let Some(req) = &self.request {
                last = last.max(req.last_activity());
            }
            let end = last + self.limit;
            let sleep = self
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(end)));
            if sleep.deadline() != end {
                sleep.as_mut().reset(end);
            }
            match sleep.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) if Instant::now() >= end => return Poll::Ready(()),
                // Activity moved the end while the timer ran: wait again.
                Poll::Ready(()) => {}
            }
        }
    }
}
