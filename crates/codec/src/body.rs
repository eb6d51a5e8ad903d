//! The request body that crosses the proxy: streamed from downstream, or local.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::oneshot;

/// A body sent upstream or answered locally. An enum rather than a boxed
/// trait object so a request costs no allocation for its body.
#[derive(Debug, Default)]
pub enum Body {
    #[default]
    Empty,
    /// A complete body held in memory (local replies, buffered requests).
    Full(Option<Bytes>),
    /// Streamed from the peer with back-pressure: nothing is read from the
    /// downstream socket until the upstream side asks for it.
    Incoming(Incoming),
    /// Like `Incoming`, and `done` fires once the last frame has been read
    /// (`true`) or the peer's body failed (`false`, e.g. a bad chunk):
    /// the router starts its timeout then, as Envoy does.
    Streaming {
        body: Incoming,
        done: Option<oneshot::Sender<bool>>,
    },
}

impl Body {
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        if bytes.is_empty() {
            Body::Empty
        } else {
            Body::Full(Some(bytes))
        }
    }
}

impl Body {
    /// A streamed body that reports how it ended on `done`.
    pub fn streaming(body: Incoming, done: oneshot::Sender<bool>) -> Self {
        Body::Streaming {
            body,
            done: Some(done),
        }
    }
}

impl From<Incoming> for Body {
    fn from(b: Incoming) -> Self {
        Body::Incoming(b)
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Body::Empty => Poll::Ready(None),
            Body::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Body::Incoming(b) => Pin::new(b).poll_frame(cx),
            Body::Streaming { body, done } => {
                let res = Pin::new(&mut *body).poll_frame(cx);
                let ended = match &res {
                    Poll::Ready(None) => Some(true),
                    Poll::Ready(Some(Ok(f))) => {
                        (f.is_trailers() || body.is_end_stream()).then_some(true)
                    }
                    Poll::Ready(Some(Err(_))) => Some(false),
                    Poll::Pending => None,
                };
                if let Some(clean) = ended
                    && let Some(tx) = done.take()
                {
                    let _ = tx.send(clean);
                }
                res
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Empty => true,
            Body::Full(b) => b.is_none(),
            Body::Incoming(b) | Body::Streaming { body: b, .. } => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Empty => SizeHint::with_exact(0),
            Body::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Incoming(b) | Body::Streaming { body: b, .. } => b.size_hint(),
        }
    }
}
