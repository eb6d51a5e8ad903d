//! The request body that crosses the proxy: streamed from downstream, or local.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::watch;

use crate::progress::{Progress, Reporter};

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
    /// Like `Incoming`, and its [`Progress`] records each frame and the
    /// end: read to the end (`true`) or failed (`false`, e.g. a bad chunk,
    /// or dropped early). The router starts its timeout at the end, as Envoy
    /// does, and reads the frames as stream activity.
    Streaming { body: Incoming, progress: Reporter },
    /// Another body, passed through while a copy of its frames is kept (up
    /// to a limit) so the request can be sent again: a retry or a mirror.
    /// Boxed: only requests that may be replayed pay for it.
    Recording(Box<Recorder>),
    /// A recorded body, sent again from memory.
    Replay { frames: Recorded, next: usize },
    /// Another body whose frames pass through a hook (the HTTP filters
    /// that read or change request bodies). Boxed: only requests whose
    /// filter chain has such a filter pay for it.
    Hooked(Box<Hooked>),
    /// Frames already read into memory (for a filter that needed the start
    /// of the body before deciding), then the rest of the stream.
    Prefixed(Box<Prefixed>),
}

/// See [`Body::Prefixed`].
#[derive(Debug)]
pub struct Prefixed {
    frames: Recorded,
    next: usize,
    rest: Body,
}

/// Sees (and may change) every frame of a [`Body::Hooked`] as it passes.
pub trait FrameHook: Send {
    fn frame(&mut self, frame: &mut Frame<Bytes>);
}

/// See [`Body::Hooked`].
pub struct Hooked {
    inner: Body,
    hook: Box<dyn FrameHook>,
}

impl std::fmt::Debug for Hooked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooked")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// A whole request body kept in memory; cheap to clone.
pub type Recorded = Arc<[ReplayFrame]>;

/// One kept frame (`http_body::Frame` is not `Clone`).
#[derive(Debug, Clone)]
pub enum ReplayFrame {
    Data(Bytes),
    Trailers(HeaderMap),
}

/// See [`Body::Recording`].
#[derive(Debug)]
pub struct Recorder {
    inner: Body,
    kept: Vec<ReplayFrame>,
    bytes: usize,
    limit: usize,
    /// Set to the whole body once it has passed through, or to `None` as
    /// soon as it is over the limit (or broken). Dropped unset when the body
    /// is dropped before its end, which reads as "not replayable".
    report: Option<watch::Sender<Option<Option<Recorded>>>>,
}

/// Where a [`Body::Recording`] reports; cloneable, so a retry and a mirror
/// can both wait for the copy.
pub type RecordingWatch = watch::Receiver<Option<Option<Recorded>>>;

impl Recorder {
    fn finish(&mut self, whole: bool) {
        if let Some(tx) = self.report.take() {
            let kept = std::mem::take(&mut self.kept);
            // A watch keeps the value for receivers that look later.
            tx.send_replace(Some(whole.then(|| kept.into())));
        }
    }

    fn keep(&mut self, frame: &Frame<Bytes>) {
        if self.report.is_none() {
            return;
        }
        if let Some(d) = frame.data_ref() {
            self.bytes += d.len();
            if self.bytes > self.limit {
                // Envoy gives up on retrying (and shadowing) a request whose
                // body outgrew the buffer; the copy is dropped at once.
                self.finish(false);
                return;
            }
            self.kept.push(ReplayFrame::Data(d.clone()));
        } else if let Some(t) = frame.trailers_ref() {
            self.kept.push(ReplayFrame::Trailers(t.clone()));
        }
    }
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
    /// A streamed body that reports its frames and its end to `progress`.
    /// `inner` with every frame passed through `hook` first. Its size is
    /// unknown (a hook may change it): the message's own `content-length`,
    /// if any, frames it.
    pub fn hooked(inner: Body, hook: Box<dyn FrameHook>) -> Self {
        Body::Hooked(Box::new(Hooked { inner, hook }))
    }

    pub fn streaming(body: Incoming, progress: Arc<Progress>) -> Self {
        Body::Streaming {
            body,
            progress: Reporter(progress),
        }
    }
}

impl Body {
    /// Wraps `inner` so that a copy of up to `limit` bytes of it is kept;
    /// the receiver gets the whole body once it has been sent, or `None` if
    /// it was larger than `limit`, failed, or was not sent to the end.
    pub fn recording(inner: Body, limit: usize) -> (Self, RecordingWatch) {
        let (tx, rx) = watch::channel(None);
        let mut rec = Recorder {
            inner,
            kept: Vec::new(),
            bytes: 0,
            limit,
            report: Some(tx),
        };
        if http_body::Body::is_end_stream(&rec.inner) {
            rec.finish(true);
        }
        (Body::Recording(Box::new(rec)), rx)
    }

    /// A body that sends `frames` again.
    pub fn replay(frames: Recorded) -> Self {
        Body::Replay { frames, next: 0 }
    }

    /// `frames` (read ahead into memory), then `rest`.
    pub fn prefixed(frames: Recorded, rest: Body) -> Self {
        Body::Prefixed(Box::new(Prefixed {
            frames,
            next: 0,
            rest,
        }))
    }
}

/// The next of `frames` (cloned; cheap), moving `next` on.
fn replay_frame(frames: &Recorded, next: &mut usize) -> Option<Result<Frame<Bytes>, hyper::Error>> {
    let frame = frames.get(*next).map(|f| match f {
        ReplayFrame::Data(d) => Ok(Frame::data(d.clone())),
        ReplayFrame::Trailers(t) => Ok(Frame::trailers(t.clone())),
    });
    *next += 1;
    frame
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
            Body::Streaming { body, progress } => {
                let res = Pin::new(&mut *body).poll_frame(cx);
                match &res {
                    Poll::Ready(None) => progress.0.finish(true),
                    Poll::Ready(Some(Ok(f))) => {
                        progress.0.touch();
                        if let Some(d) = f.data_ref() {
                            progress.0.count(d.len());
                        }
                        if f.is_trailers() || body.is_end_stream() {
                            progress.0.finish(true);
                        }
                    }
                    Poll::Ready(Some(Err(_))) => progress.0.finish(false),
                    Poll::Pending => {}
                }
                res
            }
            Body::Recording(rec) => {
                let res = Pin::new(&mut rec.inner).poll_frame(cx);
                match &res {
                    Poll::Ready(Some(Ok(f))) => {
                        rec.keep(f);
                        if http_body::Body::is_end_stream(&rec.inner) {
                            rec.finish(true);
                        }
                    }
                    Poll::Ready(None) => rec.finish(true),
                    Poll::Ready(Some(Err(_))) => rec.finish(false),
                    Poll::Pending => {}
                }
                res
            }
            Body::Hooked(h) => {
                let mut res = Pin::new(&mut h.inner).poll_frame(cx);
                if let Poll::Ready(Some(Ok(f))) = &mut res {
                    h.hook.frame(f);
                }
                res
            }
            Body::Replay { frames, next } => Poll::Ready(replay_frame(frames, next)),
            Body::Prefixed(p) => match replay_frame(&p.frames, &mut p.next) {
                Some(frame) => Poll::Ready(Some(frame)),
                None => Pin::new(&mut p.rest).poll_frame(cx),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Empty => true,
            Body::Full(b) => b.is_none(),
            Body::Incoming(b) | Body::Streaming { body: b, .. } => b.is_end_stream(),
            Body::Recording(rec) => rec.inner.is_end_stream(),
            Body::Hooked(h) => h.inner.is_end_stream(),
            Body::Replay { frames, next } => *next >= frames.len(),
            Body::Prefixed(p) => p.next >= p.frames.len() && p.rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Empty => SizeHint::with_exact(0),
            Body::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Incoming(b) | Body::Streaming { body: b, .. } => b.size_hint(),
            Body::Recording(rec) => rec.inner.size_hint(),
            Body::Hooked(_) | Body::Prefixed(_) => SizeHint::default(),
            Body::Replay { frames, next } => {
                let left = frames.get(*next..).unwrap_or_default();
                if left.iter().any(|f| matches!(f, ReplayFrame::Trailers(_))) {
                    SizeHint::default()
                } else {
                    let n = left
                        .iter()
                        .map(|f| match f {
                            ReplayFrame::Data(d) => d.len() as u64,
                            ReplayFrame::Trailers(_) => 0,
                        })
                        .sum();
                    SizeHint::with_exact(n)
                }
            }
        }
    }
}
