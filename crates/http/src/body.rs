//! The response body the HTTP path hands to the server connection: local
//! or streamed from upstream, kept counted as an open stream until done.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use strait_codec::Body;
use strait_upstream::PooledBody;

use crate::{conn::StreamGuard, timeouts};

/// A response body that keeps its stream counted until it is finished.
#[derive(Debug)]
pub(crate) struct Tracked {
    body: ProxyBody,
    _stream: StreamGuard,
}

impl Tracked {
    pub(crate) fn new(body: ProxyBody, stream: StreamGuard) -> Self {
        Tracked {
            body,
            _stream: stream,
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
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The response body: local, or streamed from upstream (under the stream
/// idle timer, when there is one).
#[derive(Debug)]
pub enum ProxyBody {
    Local(Body),
    Upstream(PooledBody, Option<timeouts::IdleTimer>),
}

/// A response body's error: the upstream's, or the idle timer's reset.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

impl ProxyBody {
    pub(crate) fn local(text: &'static str) -> Self {
        ProxyBody::Local(Body::full(Bytes::from_static(text.as_bytes())))
    }
}

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
            ProxyBody::Upstream(b, Some(idle)) => match Pin::new(b).poll_frame(cx) {
                Poll::Pending => {
                    if idle.poll_expired(cx).is_ready() {
                        // Envoy resets a stream that went idle mid-response.
                        return Poll::Ready(Some(Err(Box::new(timeouts::StreamIdle))));
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
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Local(b) => b.size_hint(),
            ProxyBody::Upstream(b, _) => b.size_hint(),
        }
    }
}
